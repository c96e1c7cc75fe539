"""The notification sink: records what every Alertmanager receiver would have been sent.

One process, two doors on loopback: HTTP (Slack, PagerDuty, webhooks, the heartbeat) and a
minimal SMTP server (e-mail). Every notification is appended as one JSON line to a file and
shown at ``GET /`` (an HTML table, newest first) and ``GET /api/notifications`` (JSON).

Each receiver of the local Alertmanager config is pointed at its own path, so the sink can
name the receiver that sent a notification:

========================  ==========================================
path or recipient         receiver
========================  ==========================================
``/slack/<name>``         ``<name>`` (slack-critical, slack-warnings, ...)
``/msteams/<name>``       ``<name>`` (msteams-critical, msteams-warnings)
``/pagerduty``            by routing key: ``pagerduty-oncall`` or ``pagerduty-service``
``/webhook``              ``webhook``
``/alerts/webhook``       the app's alert webhook (``app-webhook``)
``/heartbeat``            ``heartbeat``
mail to ``<team>@sink``   ``email-<team>``
========================  ==========================================

Run: ``python -m mystocks_otel_dev.stack.sink --http-port P --smtp-port Q --record FILE``.
"""

from __future__ import annotations

import argparse
import html
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY_BYTES = 1 << 20
MAIL_DOMAIN = "sink.invalid"


#: The routing keys the local stack gives its two PagerDuty receivers (they share one URL).
PAGERDUTY_KEYS = {"pagerduty-oncall": "pagerdutyoncall000000000000000000",
                  "pagerduty-service": "pagerdutyservice00000000000000000"}


def receiver_for_path(path: str, body: object = None) -> str:
    """The receiver a request stands for (see the module's table)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) == 2 and parts[0] in ("slack", "msteams"):
        return parts[1]
    if parts == ["pagerduty"]:
        key = body.get("routing_key") if isinstance(body, dict) else None
        return next((name for name, k in PAGERDUTY_KEYS.items() if k == key), "pagerduty-unknown")
    return {("webhook",): "webhook", ("alerts", "webhook"): "app-webhook",
            ("heartbeat",): "heartbeat"}.get(tuple(parts), "unknown")


def receiver_for_mail(recipient: str) -> str:
    local = recipient.strip("<> ").split("@", 1)[0]
    return f"email-{local}"


def summarize(receiver: str, body: object) -> dict:
    """Alert names and status from any receiver's payload (best effort, for display and tests)."""
    names: list[str] = []
    status = ""
    if isinstance(body, dict):
        if "alerts" in body:  # Alertmanager webhook format
            names = sorted({a.get("labels", {}).get("alertname", "") for a in body["alerts"]})
            status = body.get("status", "")
        elif "payload" in body:  # PagerDuty events v2: the summary names the group's first alert,
            # the details list every firing one (a group may hold several alert names)
            details = body["payload"].get("custom_details") or {}
            names = [body["payload"].get("summary", ""), str(details.get("firing", ""))]
            status = "resolved" if body.get("event_action") == "resolve" else "firing"
        elif body.get("type") == "message" and "attachments" in body:  # Microsoft Teams: an Adaptive Card
            blocks = [b for a in body["attachments"] for b in a.get("content", {}).get("body", [])]
            names = [blocks[0].get("text", "")] if blocks else []
            status = "resolved" if any("RESOLVED" in n for n in names) else "firing"
        elif "attachments" in body:  # Slack
            names = [a.get("title", "") for a in body["attachments"]]
            status = "resolved" if any("RESOLVED" in n for n in names) else "firing"
    elif isinstance(body, str):  # e-mail: the subject line
        subject = next((ln[9:] for ln in body.splitlines() if ln.startswith("Subject: ")), "")
        names = [subject]
        status = "resolved" if "RESOLVED" in subject else "firing"
    return {"alertnames": names, "status": status}


class Record:
    """The notifications received, in memory and as JSON lines on disk."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.items: list[dict] = []

    def add(self, receiver: str, channel: str, body: object, headers: dict | None = None) -> None:
        item = {"at": time.time(), "receiver": receiver, "channel": channel,
                **summarize(receiver, body), "body": body}
        if headers is not None:  # HTTP only: what the receiver sent besides the body (auth)
            item["headers"] = headers
        with self.lock:
            self.items.append(item)
            with self.path.open("a") as out:
                out.write(json.dumps(item) + "\n")

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.items)


def _html(items: list[dict]) -> bytes:
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            time.strftime("%H:%M:%S", time.localtime(i["at"])), html.escape(i["receiver"]),
            html.escape(i["status"]), html.escape(", ".join(i["alertnames"])),
            html.escape(i["channel"]))
        for i in reversed(items))
    return (
        "<!doctype html><meta charset=utf-8><title>mystocks-otel notification sink</title>"
        "<meta http-equiv=refresh content=5><h1>Notifications received</h1>"
        f"<p>{len(items)} so far (JSON: <a href=/api/notifications>/api/notifications</a>)</p>"
        "<table border=1 cellpadding=4><tr><th>time</th><th>receiver</th><th>status</th>"
        f"<th>alerts</th><th>via</th></tr>{rows}</table>"
    ).encode()


def http_server(record: Record, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.startswith("/api/notifications"):
                return self._answer(200, json.dumps(record.snapshot()).encode(), "application/json")
            if self.path in ("/", "/index.html"):
                return self._answer(200, _html(record.snapshot()), "text/html; charset=utf-8")
            if self.path == "/-/ready":
                return self._answer(200, b"ok\n", "text/plain")
            return self._answer(404, b"not found\n", "text/plain")

        def do_POST(self):  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                return self._answer(400, b"bad length\n", "text/plain")
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            record.add(receiver_for_path(self.path, body), f"http {self.path}", body, dict(self.headers))
            return self._answer(200, b"ok", "text/plain")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def smtp_server(record: Record, port: int) -> socketserver.ThreadingTCPServer:
    """Just enough SMTP for Alertmanager: no STARTTLS, no AUTH advertised."""

    class Handler(socketserver.StreamRequestHandler):
        timeout = 10

        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self):
            self.reply("220 mystocks-otel sink ESMTP")
            recipients: list[str] = []
            while line := self.rfile.readline(4096).decode(errors="replace").rstrip("\r\n"):
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-sink")
                    self.reply("250 8BITMIME")
                elif verb == "RCPT":
                    recipients.append(line.split(":", 1)[-1].strip(" <>"))
                    self.reply("250 ok")
                elif verb == "DATA":
                    self.reply("354 go on")
                    lines, size = [], 0
                    while (data := self.rfile.readline(65536)) not in (b".\r\n", b""):
                        size += len(data)
                        if size <= MAX_BODY_BYTES:
                            lines.append(data.decode(errors="replace"))
                    message = "".join(lines)
                    for rcpt in recipients:
                        record.add(receiver_for_mail(rcpt), f"smtp {rcpt}", message)
                    recipients = []
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # HELO, MAIL, RSET, NOOP
                    self.reply("250 ok")

    server = _SmtpServer(("127.0.0.1", port), Handler)
    return server


class _SmtpServer(socketserver.ThreadingTCPServer):
    """Rebinds a port in TIME_WAIT (a restarted sink); set here, not on socketserver's class."""

    allow_reuse_address = True
    daemon_threads = True


def serve(http_port: int, smtp_port: int, record_path: Path) -> None:
    record = Record(record_path)
    servers = [http_server(record, http_port), smtp_server(record, smtp_port)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        threads[0].join()
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mystocks_otel_dev.stack.sink",
                                     description="Record every notification Alertmanager sends.")
    parser.add_argument("--http-port", type=int, required=True, help="HTTP port on 127.0.0.1")
    parser.add_argument("--smtp-port", type=int, required=True, help="SMTP port on 127.0.0.1")
    parser.add_argument("--record", type=Path, required=True, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    serve(args.http_port, args.smtp_port, args.record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
