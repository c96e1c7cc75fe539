"""Monitoring as code: alert and recording rules, dashboards, docs and Alertmanager routing,
generated from the metric catalog and one config.

Laid out as kubernetes-mixin is:

- ``config``: ``MixinConfig``, the one frozen config every generator receives as
  ``generate(cfg)``: jobs and links, SLOs, ``thresholds``, ``sessions`` (the trading calendar),
  ``labels`` (severities, categories, priorities, teams, services) and ``routing``.
  ``mystocks-otel render --set KEY=VALUE`` / ``--config FILE.yaml`` override any field;
  ``--show-config`` lists them;
- ``rules/<category>.py``: a category's recording rules and alerts together (promtool
  scenarios in ``alerts/tests/<category>.yml``, runbook sections in docs/runbooks.md);
  ``rules.generate`` writes ``alerts/rules/``;
- ``dashboards/`` and ``docs/``: the Grafana and Markdown generators;
- ``routing``: alerts/alertmanager/alertmanager.yml.tmpl (routes, receivers, inhibitions)
  from the same label vocabulary;
- ``lib/``: ``rulekit`` (Alert, Record, YAML, the generated-file header) and ``promql``, the
  one PromQL builder for rules and dashboards, which rejects metric names the catalog does
  not know;
- ``alertmanager``: the deploy-time render step of the template (stdlib only;
  scripts/render-alertmanager.sh);
- ``render``: runs every generator (``mystocks-otel render [--check]``).

Of the library it imports only ``mystocks_otel.catalog``.
"""
