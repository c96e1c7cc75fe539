"""WebSockets beside HTTP routes: a chat room with a query-token check that refuses the
handshake, a router prefix, and a server that closes the conversation itself."""

from fastapi import APIRouter, FastAPI, WebSocket, status
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

app = FastAPI(title="chat")
chat = APIRouter(prefix="/chat")
ROOMS = {"lobby": 0}


@chat.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str, token: str | None = None):
    if token != "let-me-in":
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    ROOMS[room] = ROOMS.get(room, 0) + 1
    while (text := await websocket.receive_text()) != "bye":
        await websocket.send_text(f"{room}> {text}")
    await websocket.close(code=1000)


app.include_router(chat)


@app.get("/rooms")
def rooms() -> dict:
    return dict(sorted(ROOMS.items()))


ROUTES = {"/rooms": "/rooms"}


def check(client) -> None:
    ws_url = str(client.base_url).replace("http://", "ws://").rstrip("/")
    with connect(f"{ws_url}/chat/rooms/blue?token=let-me-in", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "blue> hi"
        ws.send("again")
        assert ws.recv(timeout=10) == "blue> again"
        ws.send("bye")
        assert list(ws) == []  # the server closes with 1000: iteration ends, no error
    try:
        connect(f"{ws_url}/chat/rooms/red", open_timeout=10).close()
    except InvalidStatus as refused:
        assert refused.response.status_code == 403
    else:
        raise AssertionError("a connection without the token was accepted")
    assert client.get("/rooms").json() == {"blue": 1, "lobby": 0}


def check_metrics(samples) -> None:
    """Instrumented modes: the conversation counted under its template, not the room."""
    opened = {(s.labels["namespace"], s.value) for s in samples
              if s.name == "mystocks_websocket_connections_opened_total"}
    assert opened == {("/chat/rooms/{room}", 1.0)}, opened
    messages = {(s.labels["direction"], s.value) for s in samples
                if s.name == "mystocks_websocket_messages_total"}
    assert messages == {("received", 3.0), ("sent", 2.0)}, messages
    errors = {(s.labels["namespace"], s.labels["reason"], s.value) for s in samples
              if s.name == "mystocks_websocket_connection_errors_total"}
    assert errors == {("/chat/rooms/{room}", "rejected", 1.0)}, errors
