#!/usr/bin/env bash
# Builds a core-only OpenTelemetry Collector from Debian sid's Go sources, offline.
#
# No collector binary is packaged for Debian and only PyPI/Debian/npm are reachable,
# so we take the library sources Debian ships (golang-opentelemetry-collector-dev and
# its golang-*-dev closure) plus sid's Go toolchain, unpack them into a private tree
# (no system apt state is touched) and build collector/dist/ in GOPATH mode.
#
#   collector/build.sh            prints the binary's path (builds it once, then cached)
#   OTELCOL_CACHE=DIR build.sh    cache somewhere else
#   OTELCOL_REBUILD=1 build.sh    rebuild even if the binary exists
#   OTELCOL_KEEP_TREE=1 build.sh  keep the unpacked sources (to debug a build)
#
# Exit status: 0 built (or cached), 2 the sources or toolchain could not be had
# (network, a package gone from sid), 1 anything else, e.g. dist/ does not compile.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${OTELCOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mystocks-otel}
binary=$cache/otelcol

die() { echo "collector/build.sh: $*" >&2; exit 1; }
unavailable() { echo "collector/build.sh: $*" >&2; exit 2; }
log() { echo "collector/build.sh: $*" >&2; }

if [[ -x $binary && -z ${OTELCOL_REBUILD:-} ]]; then
    echo "$binary"
    exit 0
fi

for tool in apt-get apt-cache dpkg; do
    command -v "$tool" >/dev/null || unavailable "needs $tool (a Debian system)"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || unavailable "missing $keyring (apt-get install debian-archive-keyring)"

# apt with its own sources and list/cache dirs: sid is never added to the system.
apt_dir=$cache/sid-apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$cache/debs"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian sid main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

log "updating the private sid package lists"
timeout 300 apt-get "${apt_opts[@]}" -qq update >&2 || unavailable "apt-get update for sid failed (network?)"

# The build needs only ~56 of these, but Debian's dependency closure is the only
# list we can trust without a go.mod; unused sources cost disk, not build time.
log "resolving the dependency closure of golang-opentelemetry-collector-dev"
mapfile -t packages < <(
    apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances golang-opentelemetry-collector-dev 2>/dev/null \
        | grep -E '^golang-.*-dev$' | sort -u
)
((${#packages[@]} > 20)) || unavailable "sid has no usable golang-opentelemetry-collector-dev closure (${#packages[@]} packages)"
# sid's default toolchain (golang-go depends on golang-1.NN-go), not a pinned one that
# may have left sid by the time this runs.
go_version=$(apt-cache "${apt_opts[@]}" depends golang-go 2>/dev/null \
    | sed -n 's/^ *Depends: golang-\(1\.[0-9]*\)-go$/\1/p' | head -n1)
[[ -n $go_version ]] || unavailable "cannot tell sid's Go version from golang-go's dependencies"
packages+=("golang-$go_version-go" "golang-$go_version-src")

# Start from an empty dir, so the tree never mixes two versions of one package.
rm -f "$cache"/debs/*.deb
log "downloading ${#packages[@]} packages (about 200 MB the first time)"
(cd "$cache/debs" && timeout 900 apt-get "${apt_opts[@]}" -qq download "${packages[@]}" >&2) \
    || unavailable "apt-get download failed; a package named above may have left sid"

# Unpack into one tree. It is 2 GB, so it goes after a successful build, with the
# .debs and Go's build cache (0.7 GB more): only the 30 MB binary is kept.
tree=$cache/tree
rm -rf "$tree" && mkdir -p "$tree"
for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$tree"; done

goroot=$tree/usr/lib/go-$go_version
[[ -x $goroot/bin/go ]] || unavailable "no Go toolchain in $goroot"

# GOPATH mode: Debian's -dev packages install sources under /usr/share/gocode/src.
export GO111MODULE=off GOPATH=$tree/usr/share/gocode GOROOT=$goroot GOPROXY=off \
       GOTOOLCHAIN=local GOSUMDB=off GOTELEMETRY=off GOFLAGS= CGO_ENABLED=0 \
       GOCACHE=$tree/go-build PATH=$goroot/bin:$PATH
src=$GOPATH/src/mystocks-otel/otelcol
mkdir -p "$src" && cp "$here"/dist/*.go "$src/"

# The Debian version (0.152.0-1) minus the revision, for `otelcol --version`/`components`.
version=$(dpkg-deb -f "$cache"/debs/golang-opentelemetry-collector-dev_*.deb Version)
version=${version%-*}
log "go build of collector $version ($(go version))"
start=$SECONDS
(cd "$src" && timeout 1800 go build -trimpath \
    -ldflags="-s -w -X main.collectorVersion=$version" -o "$binary.tmp" .) >&2 \
    || die "go build failed (see the errors above)"
mv "$binary.tmp" "$binary"
[[ -n ${OTELCOL_KEEP_TREE:-} ]] || rm -rf "$tree" "$cache"/debs/*.deb
log "built in $((SECONDS - start)) s: $("$binary" --version 2>/dev/null || true)"
echo "$binary"
