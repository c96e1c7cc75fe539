"""Grafana dashboards and provisioning, generated (``mystocks-otel render`` writes them).

- ``dashboards/mystocks-main.json``: the "MyStocks Monitoring Dashboard" (``main``);
- ``dashboards/mystocks-slo.json``: error budgets and burn rates (``slo``);
- ``dashboards/provisioning/``: the datasources (``provisioning``) and the file provider
  that loads the JSON above.

``common`` holds the builders both dashboards share. docker-compose mounts ``dashboards/``
at ``/var/lib/grafana/dashboards`` and ``dashboards/provisioning/`` at
``/etc/grafana/provisioning``.

The mixin's generators need the ``mixin`` extra (pyyaml, grafana-foundation-sdk), which the
runtime package does not: importing this package without it ends ``mystocks-otel render``
with one line naming the extra (:class:`MissingMixinExtra`), not a traceback.
"""

from __future__ import annotations

import importlib.util
import json

#: The modules of the ``mixin`` extra (pyproject.toml), by import name.
MIXIN_EXTRA_MODULES = ("yaml", "grafana_foundation_sdk")
MIXIN_EXTRA_INSTALL = "pip install 'mystocks-otel[mixin]'"


class MissingMixinExtra(SystemExit):
    """A SystemExit, so the CLI ends with this one line and no traceback."""


def require_mixin_extra() -> None:
    missing = [name for name in MIXIN_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingMixinExtra(
            f"mystocks-otel render: {', '.join(missing)} not installed; the mixin generators "
            f"need the mixin extra: {MIXIN_EXTRA_INSTALL}")


# Checked on import: render imports the generators before it runs any of them.
require_mixin_extra()

from mystocks_otel_mixin import config  # noqa: E402
from mystocks_otel_mixin.dashboards import provisioning  # noqa: E402

DASHBOARDS_DIR = "dashboards"


def _json(obj) -> str:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    # Round trip through the SDK's encoder first, then sort: byte-for-byte deterministic output.
    return json.dumps(json.loads(json.dumps(obj, cls=JSONEncoder)), indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def generate(cfg: config.MixinConfig = config.DEFAULT) -> dict[str, str]:
    from mystocks_otel_mixin.dashboards import main, slo

    return {
        f"{DASHBOARDS_DIR}/mystocks-main.json": _json(main.build(cfg)),
        f"{DASHBOARDS_DIR}/mystocks-slo.json": _json(slo.build(cfg)),
        f"{DASHBOARDS_DIR}/provisioning/datasources/datasources.yml": provisioning.datasources(cfg),
        f"{DASHBOARDS_DIR}/provisioning/dashboards/dashboards.yml": provisioning.DASHBOARD_PROVIDER_YML,
    }
