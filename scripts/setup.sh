#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine: Debian packages (as root, only when missing),
# then a virtualenv in .venv with the three distributions installed in editable mode:
# the library (.), the mixin (mixin/) and the dev tools (devtools/: demo and stack).
#   scripts/setup.sh          the library, the mixin and the dev tools (demo)
#   scripts/setup.sh --stack  also the monitoring binaries (mystocks-otel stack)
#   scripts/setup.sh --dev    also the test tools, at the versions in requirements/test.txt
# Nothing is started here: the stack and the tests start their own servers.
set -euo pipefail
cd "$(dirname "$0")/.."

devtools="./devtools"
packages=(redis-server postgresql)
case "${1:-}" in
    --dev) devtools="./devtools[test]"; packages+=(prometheus prometheus-alertmanager) ;;
    --stack) packages+=(prometheus prometheus-alertmanager) ;;
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
constraints=()
[[ $devtools == *"[test]" ]] && constraints=(-c requirements/test.txt)
.venv/bin/python -m pip install -q --disable-pip-version-check "${constraints[@]}" \
    -e . -e ./mixin -e "$devtools"
.venv/bin/python -c "import mystocks_otel, mystocks_otel_mixin, mystocks_otel_dev" # fail loudly if the install did not take
