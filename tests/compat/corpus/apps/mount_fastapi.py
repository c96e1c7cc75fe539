"""A versioned API: a second FastAPI app mounted under ``/v2``, with its own docs.

The sub-app has its own exception handler and its own routers; its schema is served at
``/v2/openapi.json``, and it mounts a third app under ``/admin``. A per-tenant app is
mounted under a templated prefix (``/tenants/{tenant}``), and a partners' app is routed by
``Host`` header (``app.host``). Under ``opentelemetry-instrument``
every one of these apps is created (and set up), so one request crosses several of them.
"""

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

v2 = FastAPI(title="things v2", version="2.0")


@v2.exception_handler(ValueError)
async def bad_value(request, exc: ValueError):
    return JSONResponse({"error": str(exc)}, status_code=400)


@v2.get("/things/{thing_id}")
def get_thing_v2(thing_id: int) -> dict:
    if thing_id < 0:
        raise ValueError("negative id")
    return {"id": thing_id, "version": 2}


deep = APIRouter(prefix="/deep")


@deep.get("/{group}/items/{item_id}")
async def deep_item(group: str, item_id: int) -> dict:
    return {"group": group, "item": item_id}


v2.include_router(deep)

admin = FastAPI(title="v2 admin")


@admin.get("/stats/{kind}")
def stats(kind: str) -> dict:
    return {"kind": kind}


v2.mount("/admin", admin)

tenant_app = FastAPI(title="tenant")


@tenant_app.get("/profile")
def profile(request: Request) -> dict:
    return {"tenant": request.path_params.get("tenant"), "root": request.scope["root_path"]}

app = FastAPI(title="things")


@app.get("/things/{thing_id}")
def get_thing(thing_id: int) -> dict:
    if thing_id == 0:
        raise HTTPException(404, "no thing 0")
    return {"id": thing_id, "version": 1}


app.mount("/v2", v2)
app.mount("/tenants/{tenant}", tenant_app)

partners = FastAPI(title="partners")


@partners.get("/partners/{partner_id}")
def partner(partner_id: int) -> dict:
    return {"partner": partner_id}


app.host("partners.example.com", partners)

# A 404 inside the mount matched the Mount but no route of the sub-app: the issue does not
# pin its label, so any low-cardinality form is accepted (never the raw path).
MOUNT_MISS = (None, "/v2", "/v2/{path}", "/v2/{path:path}")

ROUTES = {
    "/things/1": "/things/{thing_id}",
    "/things/0": "/things/{thing_id}",
    "/v2/things/1": "/v2/things/{thing_id}",
    "/v2/things/-5": "/v2/things/{thing_id}",
    "/v2/deep/red/items/9": "/v2/deep/{group}/items/{item_id}",
    "/v2/openapi.json": "/v2/openapi.json",
    "/v2/docs": "/v2/docs",
    "/v2/nothing/here": MOUNT_MISS,
    "/v2/metrics": MOUNT_MISS,
    "/v2/admin/stats/orders": "/v2/admin/stats/{kind}",
    "/tenants/acme/profile": "/tenants/{tenant}/profile",
    "GET /partners/7 200": "/partners/{partner_id}",
    "GET /partners/7 404": None,  # another Host: nothing matched
}


def check(client) -> None:
    assert client.get("/things/1").json() == {"id": 1, "version": 1}
    assert client.get("/things/0").json() == {"detail": "no thing 0"}
    assert client.get("/v2/things/1").json() == {"id": 1, "version": 2}
    bad = client.get("/v2/things/-5")
    assert (bad.status_code, bad.json()) == (400, {"error": "negative id"})
    assert client.get("/v2/deep/red/items/9").json() == {"group": "red", "item": 9}
    assert client.get("/v2/nothing/here").status_code == 404
    assert client.get("/v2/metrics").status_code == 404  # the sub-app has no such route

    assert client.get("/v2/admin/stats/orders").json() == {"kind": "orders"}
    assert client.get("/tenants/acme/profile").json() == {"tenant": "acme",
                                                          "root": "/tenants/acme"}

    partner_host = {"Host": "partners.example.com"}
    assert client.get("/partners/7", headers=partner_host).json() == {"partner": 7}
    assert client.get("/partners/7").status_code == 404

    sub_schema = client.get("/v2/openapi.json").json()
    assert sub_schema["info"] == {"title": "things v2", "version": "2.0"}
    assert sub_schema["servers"] == [{"url": "/v2"}]
    assert set(sub_schema["paths"]) == {"/things/{thing_id}", "/deep/{group}/items/{item_id}"}
    docs = client.get("/v2/docs")
    assert docs.status_code == 200 and "/v2/openapi.json" in docs.text
    assert set(client.get("/openapi.json").json()["paths"]) == {"/things/{thing_id}"}
