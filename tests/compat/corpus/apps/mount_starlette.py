"""A plain Starlette app (routes, a nested Mount, its own middleware and 404 handler)
mounted into a FastAPI app: the usual way an older service is folded into a new one."""

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route


class LegacyHeader:
    """Pure ASGI middleware that tags every legacy response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def tagged(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-legacy", b"1")]
            await send(message)

        await self.app(scope, receive, tagged)


async def hello(request):
    return PlainTextResponse(f"hello {request.path_params['name']}")


async def echo(request):
    return JSONResponse({"echo": (await request.body()).decode()})


async def deep(request):
    return JSONResponse({"id": request.path_params["id"], "path": request.url.path})


async def not_found(request, exc):
    return PlainTextResponse("legacy: nothing here", status_code=404)


legacy = Starlette(
    routes=[
        Route("/hello/{name}", hello),
        Route("/echo", echo, methods=["POST"]),
        Mount("/nested", routes=[Route("/deep/{id:int}", deep)]),
    ],
    middleware=[Middleware(LegacyHeader)],
    exception_handlers={404: not_found},
)

app = FastAPI(title="with-legacy")


@app.get("/")
def index() -> dict:
    return {"service": "new"}


app.mount("/legacy", legacy)

# Starlette keeps the convertor in the route's path (``{id:int}``); either form is a template.
DEEP = ("/legacy/nested/deep/{id:int}", "/legacy/nested/deep/{id}")
# A miss inside the mount: any low-cardinality label is acceptable, never the raw path.
MOUNT_MISS = (None, "/legacy", "/legacy/{path}", "/legacy/{path:path}")

ROUTES = {
    "/": "/",
    "/legacy/hello/bob": "/legacy/hello/{name}",
    "/legacy/echo": "/legacy/echo",
    "/legacy/nested/deep/42": DEEP,
    "/legacy/missing": MOUNT_MISS,
}


def check(client) -> None:
    assert client.get("/").json() == {"service": "new"}
    hello_ = client.get("/legacy/hello/bob")
    assert (hello_.status_code, hello_.text, hello_.headers["x-legacy"]) == (200, "hello bob", "1")
    assert client.post("/legacy/echo", content=b"ping").json() == {"echo": "ping"}
    assert client.get("/legacy/echo").status_code == 405
    assert client.get("/legacy/nested/deep/42").json() == {"id": 42,
                                                           "path": "/legacy/nested/deep/42"}
    missing = client.get("/legacy/missing")
    assert (missing.status_code, missing.text) == (404, "legacy: nothing here")
    assert set(client.get("/openapi.json").json()["paths"]) == {"/"}
