"""Streaming responses (async and sync generators, NDJSON), file downloads with ranges,
a ``StaticFiles`` mount, and a streamed upload read chunk by chunk from ``request.stream()``:
bodies that are not one JSON document, in both directions."""

import asyncio
import json
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
REPORT = STATIC / "report.csv"

app = FastAPI(title="streams")


@app.get("/count/{n}")
async def count(n: int):
    async def numbers():
        for i in range(n):
            await asyncio.sleep(0)
            yield f"{i}\n"

    return StreamingResponse(numbers(), media_type="text/plain")


@app.get("/events")
def events():
    def lines():
        for i in range(3):
            yield json.dumps({"event": i}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-store"})


@app.get("/reports/{name}")
def report(name: str):
    if name != "may":
        raise HTTPException(404, "no such report")
    return FileResponse(REPORT, media_type="text/csv", filename="may-report.csv")


@app.put("/uploads/{name}", status_code=201)
async def upload(name: str, request: Request) -> dict:
    size, chunks = 0, 0
    async for chunk in request.stream():
        size, chunks = size + len(chunk), chunks + (1 if chunk else 0)
    return {"name": name, "bytes": size, "chunked": chunks > 1}


app.mount("/static", StaticFiles(directory=STATIC), name="static")

# A StaticFiles mount has no route inside it: its label is the mount's own template,
# in whichever low-cardinality form (never the file's path).
STATIC_FILES = ("/static", "/static/{path}", "/static/{path:path}")

ROUTES = {
    "/count/5": "/count/{n}", "/events": "/events", "/reports/may": "/reports/{name}",
    "/reports/june": "/reports/{name}", "/static/app.css": STATIC_FILES,
    "/static/missing.css": STATIC_FILES, "/uploads/big.bin": "/uploads/{name}",
}


def check(client) -> None:
    counted = client.get("/count/5")
    assert (counted.text, counted.headers["content-type"]) == ("0\n1\n2\n3\n4\n",
                                                               "text/plain; charset=utf-8")
    assert "content-length" not in counted.headers  # chunked: a real stream
    with client.stream("GET", "/events") as streamed:
        assert [json.loads(line) for line in streamed.iter_lines()] == [
            {"event": 0}, {"event": 1}, {"event": 2}]
        assert streamed.headers["cache-control"] == "no-store"

    data = REPORT.read_bytes()
    whole = client.get("/reports/may")
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.headers["content-disposition"] == 'attachment; filename="may-report.csv"'
    assert whole.headers["accept-ranges"] == "bytes" and "etag" in whole.headers
    part = client.get("/reports/may", headers={"Range": "bytes=0-16"})
    assert (part.status_code, part.content) == (206, data[:17])
    assert part.headers["content-range"] == f"bytes 0-16/{len(data)}"
    assert client.get("/reports/june").status_code == 404

    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.content == (STATIC / "app.css").read_bytes()
    cached = client.get("/static/app.css", headers={"If-None-Match": css.headers["etag"]})
    assert (cached.status_code, cached.content) == (304, b"")
    assert client.head("/static/app.css").headers["content-length"] == str(len(css.content))
    assert client.get("/static/missing.css").status_code == 404

    def parts():
        for _ in range(16):
            yield b"x" * 65536

    uploaded = client.put("/uploads/big.bin", content=parts())  # chunked transfer encoding
    assert (uploaded.status_code, uploaded.json()) == (
        201, {"name": "big.bin", "bytes": 16 * 65536, "chunked": True})
