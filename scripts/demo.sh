#!/usr/bin/env bash
# Runs the instrumented MyStocks demo API on a fresh machine (http://127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mystocks-otel demo "$@"
