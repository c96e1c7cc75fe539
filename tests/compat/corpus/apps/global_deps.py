"""An API key demanded by every route through ``FastAPI(dependencies=[...])``.

Our endpoints must stay open to Prometheus (no API key) and the host's routes closed.
"""

from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader

API_KEY = "k-123"
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(key: str | None = Security(api_key_header)) -> str:
    if key != API_KEY:
        raise HTTPException(401, "Invalid or missing API key",
                            headers={"WWW-Authenticate": "ApiKey"})
    return key


def current_tenant(key: str = Depends(require_api_key)) -> str:
    return "tenant-" + key[-3:]


app = FastAPI(title="global-deps", dependencies=[Depends(require_api_key)])
ORDERS = {7: {"id": 7, "symbol": "AAPL"}}


@app.get("/orders")
def list_orders(tenant: str = Depends(current_tenant)) -> dict:
    return {"tenant": tenant, "orders": list(ORDERS.values())}


@app.get("/orders/{order_id}")
async def get_order(order_id: int) -> dict:
    if order_id not in ORDERS:
        raise HTTPException(404, "no such order")
    return ORDERS[order_id]


ROUTES = {
    "/orders": "/orders",
    "/orders/7": "/orders/{order_id}",
    "/orders/8": "/orders/{order_id}",
    "/unknown": None,
}


def check(client) -> None:
    good = {"X-API-Key": API_KEY}
    denied = client.get("/orders")
    assert denied.status_code == 401, denied.text
    assert denied.headers["www-authenticate"] == "ApiKey"
    assert denied.json() == {"detail": "Invalid or missing API key"}
    assert client.get("/orders/7", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/orders", headers=good).json() == {
        "tenant": "tenant-123", "orders": [{"id": 7, "symbol": "AAPL"}]}
    assert client.get("/orders/7", headers=good).json() == {"id": 7, "symbol": "AAPL"}
    assert client.get("/orders/8", headers=good).status_code == 404
    assert client.get("/unknown", headers=good).status_code == 404
    schema = client.get("/openapi.json").json()  # the schema itself is not guarded
    assert schema["components"]["securitySchemes"] == {
        "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    assert set(schema["paths"]) == {"/orders", "/orders/{order_id}"}
