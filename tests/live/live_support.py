"""Helpers of the live suite: the stack's URLs, its fault switches, Prometheus and the sink.

A plain module (not conftest) so that test modules can import it by name.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mystocks_otel_dev.stack import configs, runner

DETECTIONS: list[dict] = []
REPORT: dict = {}


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def send(url: str, body: object = None, method: str = "POST", timeout: float = 5.0,
         token: str | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@dataclass
class Traffic:
    """A bounded background load on the demo's API (a few requests per second)."""

    base: str
    rate: float = 20.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def run(self) -> None:
        # Users log in (sessions, logins), then browse quotes and portfolios.
        for platform in ("web", "ios"):
            send(f"{self.base}/api/sessions", {"user_id": "live", "password": "pw", "platform": platform})
        paths = ["/api/quotes", "/api/quotes/AAPL", "/api/quotes/MSFT", "/api/portfolio/1"]
        i = 0
        while not self.stop_event.is_set() and self.sent < 200_000:
            send(self.base + paths[i % len(paths)], method="GET", timeout=3)
            self.sent += 1
            i += 1
            self.stop_event.wait(1 / self.rate)


class LiveStack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.refresh()
        self.am_config = yaml.safe_load((workdir / "alertmanager.yml").read_text())
        self.rules = {}
        for path in sorted((workdir / "rules").glob("*.yml")):
            for group in yaml.safe_load(path.read_text())["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        self.rules[rule["alert"]] = rule
        self.production_rules = {}
        for path in sorted((runner.project_root() / "alerts" / "rules").glob("*.yml")):
            for group in yaml.safe_load(path.read_text())["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        self.production_rules[rule["alert"]] = rule

    def refresh(self) -> None:
        components, _ = runner.load(self.workdir)
        self.parts = {c.name: c for c in components}

    def url(self, name: str) -> str:
        return self.parts[name].url.rstrip("/").removesuffix("/docs").removesuffix("/vmui")

    # -- the demo -----------------------------------------------------------------------
    @property
    def demo(self) -> str:
        return self.url("demo")

    @property
    def admin_token(self) -> str:
        """The demo's /admin/faults token, from the stack's 0600 file."""
        return (self.workdir / "secrets" / runner.DEMO_ADMIN_TOKEN_FILE).read_text().strip()

    def faults(self, **switches) -> dict:
        status = send(f"{self.demo}/admin/faults", switches, token=self.admin_token)
        assert status == 200, f"POST /admin/faults {switches}: {status}"
        return switches

    def reset_faults(self) -> None:
        assert send(f"{self.demo}/admin/faults", method="DELETE", token=self.admin_token) == 200

    # -- Prometheus -----------------------------------------------------------------------
    def query(self, expr: str, replica: str = "a") -> list:
        q = urllib.parse.urlencode({"query": expr})
        return get_json(f"{self.url(f'prometheus-{replica}')}/api/v1/query?{q}")["data"]["result"]

    def firing(self, alert: str, replica: str = "a") -> bool:
        try:
            alerts = get_json(f"{self.url(f'prometheus-{replica}')}/api/v1/alerts")["data"]["alerts"]
        except OSError:
            return False
        return any(a["labels"]["alertname"] == alert and a["state"] == "firing" for a in alerts)

    # -- the sink -------------------------------------------------------------------------
    def notifications(self, since: float = 0.0) -> list[dict]:
        return [n for n in get_json(f"{self.url('sink')}/api/notifications") if n["at"] >= since]

    def expected_receivers(self, alert: str, amtool: str) -> set[str]:
        """What the routing tree says, by the real amtool: the channel table's oracle."""
        labels = {"alertname": alert, **self.rules[alert].get("labels", {})}
        result = subprocess.run([amtool, "config", "routes", "test",
                                 f"--config.file={self.workdir / 'alertmanager.yml'}",
                                 *(f"{k}={v}" for k, v in labels.items())],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return set(result.stdout.strip().split(",")) - {""}

    def group_wait(self, alert: str) -> float:
        """The overlay's group_wait for this alert's route."""
        return group_wait_of(self.am_config, self.rules[alert])


def group_wait_of(am_config: dict, rule: dict) -> float:
    """group_wait of the first route branch an alert of ``rule`` takes."""
    labels = {"alertname": rule["alert"], **rule.get("labels", {})}
    return _group_wait(am_config["route"], labels)


def _group_wait(route: dict, labels: dict, inherited: float = 0.0) -> float:
    wait = configs.seconds(route.get("group_wait", f"{inherited}s"))
    for child in route.get("routes", []):
        if all(_matches(m, labels) for m in child.get("matchers", [])):
            return _group_wait(child, labels, wait)
    return wait


def _matches(matcher: str, labels: dict) -> bool:
    import re

    name, op, value = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', matcher).groups()
    have = labels.get(name, "")
    return {"=": have == value, "!=": have != value,
            "=~": re.fullmatch(value, have) is not None, "!~": re.fullmatch(value, have) is None}[op]


