"""``FastAPI(root_path=...)``: the prefix set in code rather than on the server's command
line (the app sets ``scope["root_path"]`` itself, and the path it receives lacks it)."""

from fastapi import FastAPI, Request

app = FastAPI(title="prefixed-in-code", root_path="/svc")
ROOT_PATH = "/svc"


@app.get("/orders/{order_id}", name="order")
def order(order_id: int, request: Request) -> dict:
    return {"id": order_id, "self": request.url_for("order", order_id=order_id).path}


ROUTES = {"/orders/5": "/svc/orders/{order_id}", "/missing": None}


def check(client) -> None:
    assert client.get("/orders/5").json() == {"id": 5, "self": "/svc/orders/5"}
    assert client.get("/missing").status_code == 404
    schema = client.get("/openapi.json").json()
    assert schema["servers"] == [{"url": "/svc"}]
    assert set(schema["paths"]) == {"/orders/{order_id}"}
