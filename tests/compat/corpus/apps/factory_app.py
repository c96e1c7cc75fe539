"""An application factory, started with ``uvicorn factory_app:create_app --factory``.

Settings are read when the factory runs; the app and its routers are built inside it.
"""

import os
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI, Request

TARGET = "factory_app:create_app"
FACTORY = True


@dataclass(frozen=True)
class Settings:
    name: str
    currency: str


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def create_app() -> FastAPI:
    settings = Settings(name=os.environ.get("COMPAT_APP_NAME", "factory"), currency="EUR")
    app = FastAPI(title=settings.name)
    app.state.settings = settings
    prices = APIRouter(prefix="/prices", tags=["prices"])

    @prices.get("/{symbol}")
    def price(symbol: str, settings: Settings = Depends(get_settings)) -> dict:
        return {"symbol": symbol.upper(), "currency": settings.currency}

    @app.get("/about")
    async def about(settings: Settings = Depends(get_settings)) -> dict:
        return {"name": settings.name}

    app.include_router(prices)
    return app


ROUTES = {"/prices/aapl": "/prices/{symbol}", "/about": "/about"}


def check(client) -> None:
    assert client.get("/prices/aapl").json() == {"symbol": "AAPL", "currency": "EUR"}
    assert client.get("/about").json() == {"name": "factory"}
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "factory"
    assert set(schema["paths"]) == {"/prices/{symbol}", "/about"}
