#!/usr/bin/env bash
# The main job on a fresh machine: the instrumented MyStocks demo inside the whole local
# monitoring stack (`mystocks-otel stack up`): its own PostgreSQL and Redis, the demo with two
# workers, VictoriaMetrics, the Collector, Jaeger (traces), VictoriaLogs (logs), two Prometheus
# replicas and their web console, two clustered Alertmanager peers and a notification sink, all
# on 127.0.0.1 with free ports. It drives traffic, prints where to look, and stops everything on
# Ctrl-C.
#
#   scripts/demo.sh             up, traffic every minute, Ctrl-C stops it all
#   scripts/demo.sh --detach    up and some traffic, then leave it running
#                               (.venv/bin/mystocks-otel stack status | down)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --stack
cli=.venv/bin/mystocks-otel

$cli stack up
demo_url=$(.venv/bin/python -c 'import json; s = json.load(open(".stack/state.json"))
print(next(c["url"] for c in s["components"] if c["name"] == "demo").removesuffix("/docs"))')

if [[ "${1:-}" == "--detach" ]]; then
    $cli traffic --base-url "$demo_url" --duration 20 >/dev/null
    echo "The stack keeps running: '$cli stack status' shows it, '$cli stack down' stops it."
    exit 0
fi
trap '$cli stack down' EXIT
echo "Driving traffic at $demo_url every minute; break it at $demo_url/admin/faults"
echo "  (curl -H \"Authorization: Bearer \$(cat .stack/secrets/demo-admin-token)\" ...). Ctrl-C stops everything."
while $cli stack status >/dev/null; do
    $cli traffic --base-url "$demo_url" --duration 20 >/dev/null || true
    sleep 40
done
echo "a component stopped; '$cli stack status' before the stack goes down:"
$cli stack status || true
