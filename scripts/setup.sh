#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine: Debian packages (as root, only when missing),
# then a virtualenv in .venv with the three distributions installed in editable mode:
# the library (.), the mixin (mixin/) and the dev tools (devtools/: demo and stack).
#   scripts/setup.sh          the library, the mixin and the dev tools (demo)
#   scripts/setup.sh --stack  also Debian's prometheus, whose web UI the stack's read-only console serves
#   scripts/setup.sh --dev    also the test tools, at the versions in requirements/test.txt
# Prometheus 3.16 (prometheus, promtool), Alertmanager 0.35 (alertmanager, amtool), Jaeger v2,
# VictoriaLogs and the Collector are not Debian packages: they are built from pinned Go modules
# on first use (scripts/build-go-tool.sh, collector/build.sh; Go 1.26 and the Go module proxy).
# Nothing is started here: the stack and the tests start their own servers (the tests use
# REDIS_URL / DATABASE_URL when set, else throwaway redis-server and PostgreSQL clusters).
set -euo pipefail
cd "$(dirname "$0")/.."

devtools="./devtools"
packages=(redis-server postgresql)
case "${1:-}" in
    --dev) devtools="./devtools[test]"; packages+=(prometheus) ;;
    --stack) packages+=(prometheus) ;;
esac

# A package counts as present when what the tests use of it is there: its binary (and, for
# PostgreSQL, the postgres user a root test run starts its throwaway clusters as).
present() {
    case "$1" in
        postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && getent passwd postgres >/dev/null ;;
        redis-server) command -v redis-server >/dev/null || [[ -x /usr/bin/redis-server ]] ;;
        prometheus) [[ -d /usr/share/prometheus/web/static ]] && command -v prometheus >/dev/null ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" ;;
    esac
}
missing=()
for pkg in "${packages[@]}"; do
    present "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "setup: apt-get install ${missing[*]}"
    # Install only: the packages' scripts must not start a Redis or PostgreSQL service (the tests
    # start their own). policy-rc.d exit 101 forbids it, as in Debian's container images.
    policy=/usr/sbin/policy-rc.d own_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
        trap '[[ -n $own_policy ]] && rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -n $own_policy ]] && rm -f "$policy" && own_policy=""
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    # the first install downloads the Python packages (about a minute; later runs only check)
    echo "setup: creating .venv and installing the Python packages (first time: about a minute)"
    "$python" -m venv .venv
fi
# Debian 12's pip cannot backtrack through the OpenTelemetry beta pins; a current one can.
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24" 2>/dev/null
constraints=()
[[ $devtools == *"[test]" ]] && constraints=(-c requirements/test.txt)
.venv/bin/python -m pip install -q --disable-pip-version-check "${constraints[@]}" \
    -e . -e ./mixin -e "$devtools"
.venv/bin/python -c "import mystocks_otel, mystocks_otel_mixin, mystocks_otel_dev" # fail loudly if the install did not take
