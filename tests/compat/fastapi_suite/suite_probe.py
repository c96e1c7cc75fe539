"""A pytest plugin loaded into both runs of FastAPI's suite: it records, at the end of the
session, whether mystocks-otel was active in that process (so the instrumented run is
known to have been instrumented, and the bare one known to have been bare)."""

import json
import os
import sys


def pytest_sessionfinish(session, exitstatus):
    fastapi = sys.modules.get("fastapi")
    init = getattr(getattr(fastapi, "FastAPI", None), "__init__", None)
    report = {
        "distro_loaded": "mystocks_otel.distro" in sys.modules,
        "fastapi_patched": bool(getattr(init, "_mystocks_patched", False)),
    }
    with open(os.environ["MYSTOCKS_SUITE_PROBE"], "w") as out:
        json.dump(report, out)
