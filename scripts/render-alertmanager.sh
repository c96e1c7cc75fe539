#!/usr/bin/env bash
# Renders alerts/alertmanager/rendered/alertmanager.yml and writes the secret files to
# alerts/alertmanager/secrets/ (mode 0600), both from the environment. Run it before
# `docker-compose up` (or whenever a variable changes) and restart/reload Alertmanager.
#
#   SMTP_HOST=... SLACK_WEBHOOK_URL_CRITICAL=... MSTEAMS_WEBHOOK_URL_CRITICAL=... \
#       scripts/render-alertmanager.sh [--allow-missing]
#
# Variables: alerts/alertmanager/README.md. --allow-missing skips unset *secrets* (their
# receivers then fail to deliver, visibly in alertmanager_notifications_failed_total);
# the non-secret variables are always required. The module is stdlib-only and is run as a
# file (not `-m mystocks_otel...`, whose package __init__ imports OpenTelemetry), so a bare
# python3 is enough: no venv needed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
render=mixin/mystocks_otel_mixin/alertmanager.py

"$python" "$render" render \
    --template alerts/alertmanager/alertmanager.yml.tmpl \
    --output alerts/alertmanager/rendered/alertmanager.yml
"$python" "$render" secrets --dir alerts/alertmanager/secrets \
    --template alerts/alertmanager/alertmanager.yml.tmpl "$@"

# Validate what was written with amtool 0.28 or newer (msteamsv2_configs): $AMTOOL, else the
# repository's pinned 0.35 when built (scripts/build-go-tool.sh alertmanager --path builds
# nothing), else the one on PATH (it is in the Alertmanager image; Debian's 0.25 is too old).
amtool=${AMTOOL:-}
if [ -z "$amtool" ]; then
    built=$(scripts/build-go-tool.sh alertmanager --path 2>/dev/null | tail -n 1 || true)
    if [ -n "$built" ] && [ -x "$built/amtool" ]; then
        amtool=$built/amtool
    else
        amtool=$(command -v amtool || true)
    fi
fi
if [ -n "$amtool" ]; then
    "$amtool" check-config alerts/alertmanager/rendered/alertmanager.yml >/dev/null
    echo "amtool check-config: OK ($("$amtool" --version 2>&1 | head -n 1))"
fi
