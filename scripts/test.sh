#!/usr/bin/env bash
# Runs every test on a fresh machine: sets up what it needs, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k catalog).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
