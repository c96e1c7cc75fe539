"""Monitoring as code: alert and recording rules, dashboards and docs generated from the catalog.

Laid out as kubernetes-mixin is:

- ``config``: thresholds, SLOs, the trading calendar, the label vocabularies, and
  ``MixinConfig``, the render-time settings every generator receives as ``generate(cfg)``;
- ``rules/<category>.py``: a category's recording rules and alerts together (promtool
  scenarios in ``alerts/tests/<category>.yml``); ``rules.generate`` writes ``alerts/rules/``;
- ``dashboards/`` and ``docs/``: the Grafana and Markdown generators;
- ``lib/``: ``rulekit`` (Alert, Record, YAML) and ``promql``, the one PromQL builder, which
  rejects metric names the catalog does not know;
- ``alertmanager``: the Alertmanager render step (stdlib only; scripts/render-alertmanager.sh);
- ``render``: runs every generator (``mystocks-otel render [--check] [--grafana-url ...]``).
"""
