"""A ``FastAPI`` subclass with its own ``openapi()`` (a logo, an extra schema entry) and an
endpoint that lists ``app.routes``, as admin pages and sitemaps do: anything added to the
host's router would show in both."""

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.routing import Mount


class ShopAPI(FastAPI):
    def openapi(self) -> dict:
        if self.openapi_schema is None:
            schema = get_openapi(title="Shop", version="3.1.0", routes=self.routes)
            schema["info"]["x-logo"] = {"url": "/logo.png"}
            self.openapi_schema = schema
        return self.openapi_schema


app = ShopAPI()


@app.get("/products/{sku}", summary="One product")
def product(sku: str) -> dict:
    return {"sku": sku}


@app.get("/routes")
def routes(request: Request) -> list:
    return sorted(f"{type(r).__name__} {getattr(r, 'path', '?')}" for r in request.app.routes
                  if not isinstance(r, Mount))


ROUTES = {"/products/p-1": "/products/{sku}", "/routes": "/routes"}


def check(client) -> None:
    assert client.get("/products/p-1").json() == {"sku": "p-1"}
    assert client.get("/routes").json() == [
        "APIRoute /products/{sku}", "APIRoute /routes", "Route /docs",
        "Route /docs/oauth2-redirect", "Route /openapi.json", "Route /redoc"]
    schema = client.get("/openapi.json").json()
    assert schema["info"] == {"title": "Shop", "version": "3.1.0", "x-logo": {"url": "/logo.png"}}
    assert set(schema["paths"]) == {"/products/{sku}", "/routes"}
