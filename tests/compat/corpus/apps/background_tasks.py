"""Background tasks: added by a route, added by a dependency, and attached to a
``Response`` directly. They run after the response is sent, inside the request's call."""

import asyncio
import time

from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

DONE: list[str] = []


def send_mail(to: str) -> None:
    time.sleep(0.02)  # a slow side effect, off the response path
    DONE.append(f"mail:{to}")


async def audit(tasks: BackgroundTasks) -> None:
    tasks.add_task(DONE.append, "audit")


app = FastAPI(title="background")


@app.post("/signup/{user}", status_code=202, dependencies=[Depends(audit)])
def signup(user: str, tasks: BackgroundTasks) -> dict:
    tasks.add_task(send_mail, user)
    return {"queued": user}


@app.post("/export")
async def export():
    return JSONResponse({"export": "started"}, background=BackgroundTask(DONE.append, "export"))


@app.get("/done")
async def done(expect: int = 0) -> dict:
    """What ran so far; waits (bounded) until ``expect`` tasks are done: checks need no polling."""
    for _ in range(200):
        if len(DONE) >= expect:
            break
        await asyncio.sleep(0.01)
    return {"done": sorted(DONE)}


ROUTES = {"/signup/ann": "/signup/{user}", "/signup/bo": "/signup/{user}", "/export": "/export",
          "/done": "/done"}


def check(client) -> None:
    first = client.post("/signup/ann")
    assert (first.status_code, first.json()) == (202, {"queued": "ann"})
    assert client.post("/signup/bo").json() == {"queued": "bo"}
    assert client.post("/export").json() == {"export": "started"}
    assert client.get("/done", params={"expect": 5}).json() == {
        "done": ["audit", "audit", "export", "mail:ann", "mail:bo"]}
