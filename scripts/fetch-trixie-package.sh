#!/usr/bin/env bash
# Fetches one Debian 13 (trixie) package into a private cache and prints the path of
# its binary, without adding trixie to the system's apt sources or installing anything.
# Used for tools Debian 12 lacks but whose static binaries run here (docker-compose).
#
#   scripts/fetch-trixie-package.sh NAME [BINARY]   BINARY defaults to NAME
#   cache: ${XDG_CACHE_HOME:-$HOME/.cache}/mystocks-otel/trixie (override: TRIXIE_CACHE)
set -euo pipefail

name=${1:?usage: fetch-trixie-package.sh NAME [BINARY]}
binary=${2:-$name}
cache=${TRIXIE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mystocks-otel/trixie}
root=$cache/root/$name

die() { echo "fetch-trixie-package.sh: $*" >&2; exit 1; }

find_binary() {
    local dir
    for dir in usr/bin usr/sbin usr/libexec/docker/cli-plugins usr/libexec; do
        if [[ -x $root/$dir/$binary && ! -d $root/$dir/$binary ]]; then
            echo "$root/$dir/$binary"
            return 0
        fi
    done
    return 1
}

# Idempotent: a package unpacked before is reused with no network access.
if find_binary; then exit 0; fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || die "missing $keyring (apt-get install debian-archive-keyring)"
mkdir -p "$cache/lists/partial" "$cache/apt-cache/archives/partial" "$cache/debs"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" >"$cache/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$cache/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$cache/lists" -o "Dir::Cache=$cache/apt-cache"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

timeout 300 apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update for trixie failed (network?)"
rm -f "$cache/debs/${name}_"*.deb
(cd "$cache/debs" && timeout 300 apt-get "${apt_opts[@]}" -qq download "$name" >&2) \
    || die "apt-get download $name failed: no such package in trixie?"
rm -rf "$root" && mkdir -p "$root"
dpkg -x "$cache/debs/${name}_"*.deb "$root"
rm -f "$cache/debs/${name}_"*.deb # unpacked; the .deb is not needed again
find_binary || die "package $name has no executable named $binary"
