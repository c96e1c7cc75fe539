"""The /ws/quotes feed: welcome, default feed, subscribe, binary ping, bad input, clean exit."""

from __future__ import annotations

import json

from support import wait_until

MAX_MESSAGES = 200  # bound every read loop


def _next(ws, wanted_type: str) -> dict:
    for _ in range(MAX_MESSAGES):
        message = json.loads(ws.receive_text())
        if message["type"] == wanted_type:
            return message
    raise AssertionError(f"no {wanted_type!r} message in {MAX_MESSAGES}")


def test_welcome_and_default_feed_of_every_symbol(client, demo):
    with client.websocket_connect("/ws/quotes") as ws:
        welcome = ws.receive_json()
        assert welcome["type"] == "welcome"
        assert set(welcome["symbols"]) == set(demo.simulator.prices)
        seen = {_next(ws, "tick")["symbol"] for _ in range(60)}
    assert len(seen) > 1, "without a subscription every symbol is pushed"


def test_subscribe_narrows_the_feed(client):
    with client.websocket_connect("/ws/quotes") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"subscribe": ["aapl", "MSFT", "NOT-A-SYMBOL"]}))
        ack = _next(ws, "subscribed")
        assert ack["symbols"] == ["AAPL", "MSFT"] and ack["unknown"] == ["NOT-A-SYMBOL"]
        ticks = [_next(ws, "tick") for _ in range(20)]
    assert {t["symbol"] for t in ticks} <= {"AAPL", "MSFT"}
    assert all(t["price"] > 0 and t["ts"] > 0 for t in ticks)


def test_binary_ping_gets_binary_pong(client):
    with client.websocket_connect("/ws/quotes") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"subscribe": []}))  # silence the ticks
        _next(ws, "subscribed")
        ws.send_bytes(b"ping")
        assert ws.receive_bytes() == b"pong"


def test_bad_messages_get_an_error_not_a_disconnect(client):
    with client.websocket_connect("/ws/quotes") as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"subscribe": []}))
        _next(ws, "subscribed")
        ws.send_text("not json")
        assert "JSON" in _next(ws, "error")["detail"]
        ws.send_text(json.dumps({"subscribe": ["X"] * 51}))
        assert "at most 50" in _next(ws, "error")["detail"]
        ws.send_text(json.dumps({"unsubscribe": "x"}))
        assert "subscribe" in _next(ws, "error")["detail"]
        ws.send_bytes(b"\x00\x01")
        assert "binary" in _next(ws, "error")["detail"]
        ws.send_bytes(b"ping")  # still alive
        assert ws.receive_bytes() == b"pong"


def test_disconnect_unsubscribes(client, demo):
    with client.websocket_connect("/ws/quotes") as ws:
        ws.receive_json()
        assert len(demo.hub.subscribers) == 1
    wait_until(lambda: not demo.hub.subscribers, 5, what="subscriber removed after close")
