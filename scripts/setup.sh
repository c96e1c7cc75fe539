#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine: Debian packages (as root, only when missing),
# then a virtualenv in .venv with the package installed in editable mode.
#   scripts/setup.sh          runtime + demo dependencies
#   scripts/setup.sh --stack  also the mixin and the monitoring binaries (mystocks-otel stack)
#   scripts/setup.sh --dev    also the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extra="demo"
packages=(redis-server)
case "${1:-}" in
    --dev) extra="dev"; packages+=(prometheus prometheus-alertmanager postgresql) ;;
    --stack) extra="demo,mixin"; packages+=(prometheus prometheus-alertmanager postgresql) ;;
esac

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
# Debian 12's pip cannot backtrack through the OpenTelemetry beta pins; a current one can.
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24" 2>/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extra]"
.venv/bin/python -c "import mystocks_otel" # fail loudly if the install did not take
