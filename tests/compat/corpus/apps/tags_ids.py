"""Operation ids from tags, the pattern client generators (openapi-ts, orval) ask for.

The host's ``generate_unique_id_function`` assumes every route has a tag: a route
without one (ours, if we ever land in the host's router) makes it raise IndexError.
"""

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel


def unique_id(route) -> str:
    return f"{route.tags[0]}-{route.name}"


app = FastAPI(title="tags", generate_unique_id_function=unique_id)
items = APIRouter(prefix="/items", tags=["items"])
users = APIRouter(prefix="/users", tags=["users"])


class Item(BaseModel):
    name: str
    price: float


ITEMS = {1: Item(name="apple", price=1.5)}


@items.get("/{item_id}")
def read_item(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(404, "Item not found")
    return ITEMS[item_id]


@items.post("", status_code=201)
def create_item(item: Item) -> dict:
    new_id = max(ITEMS) + 1
    ITEMS[new_id] = item
    return {"id": new_id, **item.model_dump()}


@users.get("/me")
async def read_me() -> dict:
    return {"user": "alice"}


app.include_router(items)
app.include_router(users)


@app.get("/ping", tags=["ops"])
async def ping() -> dict:
    return {"pong": True}


ROUTES = {
    "/items/1": "/items/{item_id}",
    "/items/99": "/items/{item_id}",
    "/items/abc": "/items/{item_id}",
    "/items": "/items",
    "/users/me": "/users/me",
    "/ping": "/ping",
}


def check(client) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200, schema.text
    operation_ids = {op["operationId"] for path in schema.json()["paths"].values()
                     for op in path.values()}
    assert operation_ids == {"items-read_item", "items-create_item", "users-read_me", "ops-ping"}

    assert client.get("/items/1").json() == {"name": "apple", "price": 1.5}
    missing = client.get("/items/99")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Item not found"})
    assert client.get("/items/abc").status_code == 422
    created = client.post("/items", json={"name": "pear", "price": 2})
    assert (created.status_code, created.json()) == (201, {"id": 2, "name": "pear", "price": 2.0})
    assert client.post("/items", json={"name": "pear"}).status_code == 422
    assert client.get("/users/me").json() == {"user": "alice"}
    assert client.get("/ping").json() == {"pong": True}
