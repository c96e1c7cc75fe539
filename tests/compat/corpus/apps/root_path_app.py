"""Behind a proxy that strips ``/api``: ``uvicorn --root-path /api``.

Links the app builds and the schema's ``servers`` carry the prefix; the path the app
routes on does not. Semantic conventions want ``http.route`` to include the application
root, so the templates below start with ``/api``.
"""

from fastapi import APIRouter, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

app = FastAPI(title="behind-proxy")
UVICORN_ARGS = ["--root-path", "/api"]
ROOT_PATH = "/api"


@app.get("/items/{item_id}", name="read_item")
def read_item(item_id: int, request: Request) -> dict:
    return {"id": item_id, "self": request.url_for("read_item", item_id=item_id).path,
            "root_path": request.scope["root_path"]}


v1 = APIRouter(prefix="/v1")


@v1.get("/users/{user_id}")
async def read_user(user_id: str) -> dict:
    return {"user": user_id}


app.include_router(v1)


async def status_page(request):
    return PlainTextResponse(f"ok {request.path_params['part']} {request.url.path}")


app.mount("/status", app=Starlette(routes=[Route("/{part}", status_page)]))

ROUTES = {
    "/items/3": "/api/items/{item_id}",
    "/v1/users/u-1": "/api/v1/users/{user_id}",
    "/docs": "/api/docs",
    "/status/db": "/api/status/{part}",
    "/nowhere": None,
}


def check(client) -> None:
    item = client.get("/items/3")
    assert item.json() == {"id": 3, "self": "/api/items/3", "root_path": "/api"}
    assert client.get("/v1/users/u-1").json() == {"user": "u-1"}
    assert client.get("/nowhere").status_code == 404
    assert client.get("/status/db").text == "ok db /api/status/db"  # a mount behind the root
    schema = client.get("/openapi.json").json()
    assert schema["servers"] == [{"url": "/api"}]
    assert set(schema["paths"]) == {"/items/{item_id}", "/v1/users/{user_id}"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "'/api/openapi.json'" in docs.text
