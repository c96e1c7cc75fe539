"""Routers inside routers, each with a prefix and its own dependencies.

The common layout of a larger service: ``/api/v1`` includes an ``/admin`` router guarded
by a bearer-token dependency, which includes ``/reports``; the admin router is included a
second time under ``/legacy``; a dependency with ``yield`` hands out a session and closes
it; a custom ``APIRoute`` class stamps a header on every response of one router.
"""

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.routing import APIRoute

SESSIONS = {"opened": 0, "closed": 0}


def get_session():
    SESSIONS["opened"] += 1
    try:
        yield {"id": SESSIONS["opened"]}
    finally:
        SESSIONS["closed"] += 1


def require_admin(authorization: str | None = Header(default=None)) -> None:
    if authorization != "Bearer admin-token":
        raise HTTPException(403, "admins only")


class StampedRoute(APIRoute):
    """A custom route class, as apps use for timing or logging."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def stamped(request):
            response = await handler(request)
            response.headers["X-Router"] = "reports"
            return response

        return stamped


reports = APIRouter(prefix="/reports", route_class=StampedRoute)


@reports.get("/{year}/{month}")
def monthly(year: int, month: int, session: dict = Depends(get_session)) -> dict:
    return {"year": year, "month": month, "session": session["id"]}


admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])


@admin.delete("/users/{user_id}", status_code=204)
def delete_user(user_id: int) -> None:
    return None


admin.include_router(reports)

api = APIRouter(prefix="/api/v1")


@api.get("/public/{slug}")
async def public(slug: str) -> dict:
    return {"slug": slug}


@api.get("/sessions")
def sessions() -> dict:
    return dict(SESSIONS)


api.include_router(admin)
app = FastAPI(title="router-deps")
app.include_router(api)
app.include_router(admin, prefix="/legacy")

ROUTES = {
    "/api/v1/public/hello": "/api/v1/public/{slug}",
    "/api/v1/public/hello/": None,  # the router's slash redirect: no route matched
    "/api/v1/admin/reports/2024/5": "/api/v1/admin/reports/{year}/{month}",
    "/legacy/admin/reports/2023/12": "/legacy/admin/reports/{year}/{month}",
    "/api/v1/admin/users/3": "/api/v1/admin/users/{user_id}",
    "/api/v1/sessions": "/api/v1/sessions",
}


def check(client) -> None:
    admin_auth = {"Authorization": "Bearer admin-token"}
    assert client.get("/api/v1/public/hello").json() == {"slug": "hello"}
    redirect = client.get("/api/v1/public/hello/")
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith("/api/v1/public/hello")
    not_allowed = client.post("/api/v1/public/hello")
    assert (not_allowed.status_code, not_allowed.headers["allow"]) == (405, "GET")

    denied = client.get("/api/v1/admin/reports/2024/5")
    assert (denied.status_code, denied.json()) == (403, {"detail": "admins only"})
    report = client.get("/api/v1/admin/reports/2024/5", headers=admin_auth)
    assert report.json() == {"year": 2024, "month": 5, "session": 1}
    assert report.headers["x-router"] == "reports"
    legacy = client.get("/legacy/admin/reports/2023/12", headers=admin_auth)
    assert legacy.json() == {"year": 2023, "month": 12, "session": 2}
    assert client.get("/legacy/admin/reports/2023/12").status_code == 403
    deleted = client.delete("/api/v1/admin/users/3", headers=admin_auth)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get("/api/v1/sessions").json() == {"opened": 2, "closed": 2}

    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {"/api/v1/public/{slug}", "/api/v1/sessions",
                     "/api/v1/admin/users/{user_id}", "/api/v1/admin/reports/{year}/{month}",
                     "/legacy/admin/users/{user_id}", "/legacy/admin/reports/{year}/{month}"}
