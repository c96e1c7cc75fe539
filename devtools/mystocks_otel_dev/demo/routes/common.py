"""What every router shares: the app state and the path/body validation of ids and symbols.

Symbols and user ids are bounded in shape here, but they are never metric labels anyway: they
are path parameters, and the HTTP metrics label the route template.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from ..faults import inject_api_faults

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,15}$"
USER_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"

Symbol = Annotated[str, Path(pattern=SYMBOL_PATTERN, description="Ticker, e.g. AAPL or 600519.SH")]
UserId = Annotated[str, Path(pattern=USER_PATTERN, description="User id")]


def demo_state(request: Request):
    return request.app.state.demo


Demo = Annotated[object, Depends(demo_state)]


#: For every /api router. The prefix is set on the router itself, not at include_router():
#: FastAPI >= 0.16x no longer copies included routes, so an include prefix is missing from
#: scope["route"].path, the route template the HTTP metrics label.
API = {"prefix": "/api", "dependencies": [Depends(inject_api_faults)]}
