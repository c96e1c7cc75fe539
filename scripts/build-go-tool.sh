#!/usr/bin/env bash
# Builds one of the monitoring stack's Go programs from its Go module, pinned and cached.
#
# tools/<name>/go.mod is the manifest: its `tool` lines name the programs to build (the
# package path's last element is the binary's name) and its requires pin every module.
# tools/<name>/go.sum is the lock. Both are committed. The build is
# `go build -mod=readonly`: every module comes from the Go module proxy and must match go.sum.
# tools/<name>/build.conf (optional) adds `tags=` (build tags) and `ldflags=` (a version
# stamp) lines, and `local=<module>` when a module cannot build as the proxy serves it (its
# sources `//go:embed` a web UI that its release process builds and its module zip lacks):
# that module, checked against go.sum, is copied out of the module cache, the files under
# tools/<name>/overlay/ are laid over the copy, and the build uses the copy (a `replace` in
# the build's own copy of go.mod; the committed files are not changed).
#
#   scripts/build-go-tool.sh NAME                prints the folder holding the binaries (builds once)
#   scripts/build-go-tool.sh NAME --path         prints where that folder is for these pins; builds nothing
#   scripts/build-go-tool.sh NAME --update-lock  after a pin change in tools/NAME/go.mod: go mod tidy
#                                                rewrites go.mod and go.sum, then builds
#   GO_TOOLS_CACHE=DIR     cache somewhere else (default ${XDG_CACHE_HOME:-~/.cache}/mystocks-otel)
#   GO_TOOLS_REBUILD=1     rebuild even if the binaries exist
#   GO_TOOLS_VERBOSE=1     stream go build -v (a line a package)
#   GO_TOOLS_GO=/path/go   the toolchain (default: go on PATH, else /usr/local/go/bin/go)
#   GOPROXY                respected if set (default https://proxy.golang.org)
#
# The binaries are in $cache/NAME-<key>/, the key a hash of tools/NAME/go.mod, go.sum,
# build.conf, this script and go-lib.sh; $cache/NAME links to the newest. Go's module cache and build
# cache are $cache/collector-build/{gopath,gocache}, shared with collector/build.sh: the
# modules and compiled packages that the Collector and these programs have in common
# (Prometheus' own packages, gRPC, protobuf, OpenTelemetry) are fetched and compiled once.
#
# Exit status: 0 built (or cached); 2 the toolchain or the module proxy is unavailable;
# 1 anything else (an unknown tool, a lock that does not match, a compile error).
set -euo pipefail
{ # read whole before it runs: editing this file during a build cannot change that build

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
repo=$(dirname "$here")
name=${1:-}
me="build-go-tool.sh${name:+ $name}"
log() { echo "$me: $*" >&2; }
die() { log "$*"; exit 1; }
unavailable() { log "$*"; exit 2; }
# shellcheck source=go-lib.sh
source "$here/go-lib.sh"  # the toolchain and run_step, shared with collector/build.sh

case $name in
    "" | -h | --help) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
esac
[[ $name =~ ^[a-z0-9-]+$ ]] || die "not a tool name: '$name'"
mode=build
case ${2:-} in
    "") ;;
    --path) mode=path ;;
    --update-lock) mode=update-lock ;;
    *) die "unknown argument '$2' (try --help)" ;;
esac

dir=$repo/tools/$name
manifest=$dir/go.mod
lock=$dir/go.sum
conf=$dir/build.conf
[[ -r $manifest ]] || die "no tools/$name/go.mod (tools: $(ls "$repo/tools" | tr '\n' ' '))"
[[ -r $lock ]] || die "no tools/$name/go.sum: run $0 $name --update-lock"
cache=${GO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mystocks-otel}
work=$cache/collector-build
interval=${GO_TOOLS_PROGRESS_SECONDS:-15}

setting() { [[ -r $conf ]] && sed -n "s/^$1=//p" "$conf" | tail -n1 || true; }
out_dir() {
    local files=("$manifest" "$lock" "$self" "$here/go-lib.sh") key
    [[ -r $conf ]] && files+=("$conf")
    [[ -d $dir/overlay ]] && mapfile -t -O "${#files[@]}" files < <(find "$dir/overlay" -type f | sort)
    key=$(cat "${files[@]}" | sha256sum | cut -c1-16)
    echo "$cache/$name-$key"
}
mapfile -t packages < <(awk '/^tool \($/ {t = 1; next} t && /^\)/ {t = 0; next}
                              t && NF {print $1} /^tool [^(]/ {print $2}' "$manifest")
((${#packages[@]})) || die "tools/$name/go.mod has no tool line"
binaries=()
for package in "${packages[@]}"; do binaries+=("$(basename "$package")"); done
built() { local b; for b in "${binaries[@]}"; do [[ -x $1/$b ]] || return 1; done; }

out=$(out_dir)
if [[ $mode == path ]] || { [[ $mode == build && -z ${GO_TOOLS_REBUILD:-} ]] && built "$out"; }; then
    echo "$out"
    exit 0
fi

# One build per tool at a time (parallel test sessions share the cache); different tools
# build side by side (Go's caches are safe for that). Children get the lock fd closed.
mkdir -p "$cache" "$work"
exec 9>"$cache/.$name-build.lock"
if command -v flock >/dev/null; then
    flock -n 9 || { log "waiting for another build of $name in $cache"; flock -w 3600 9 || die "lock timeout"; }
    if [[ $mode == build && -z ${GO_TOOLS_REBUILD:-} ]] && built "$out"; then
        echo "$out"   # built by the build we waited for
        exit 0
    fi
fi

started=$SECONDS
step_no=0
steps=3
[[ $mode == update-lock ]] && steps=4
step() { step_no=$((step_no + 1)); log "[$step_no/$steps] $*"; }

# -- the toolchain, every piece of Go state in $work ------------------------------------------
step "toolchain"
verbose=${GO_TOOLS_VERBOSE:-}
sum_name=tools/$name/go.sum
go_toolchain "${GO_TOOLS_GO:-}" GO_TOOLS_GO "$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' "$manifest")" "tools/$name/go.mod"

logs=$work/$name-logs
mkdir -p "$logs"
src=$work/$name-src
rm -rf "$src" && mkdir -p "$src"
cp "$manifest" "$lock" "$src/"

if [[ $mode == update-lock ]]; then
    step "re-resolving the module graph (go mod tidy)"
    (cd "$src" && run_step "go mod tidy" "$logs/tidy.log" "" 1800 "${go_env[@]}" go mod tidy)
    for f in go.mod go.sum; do
        if cmp -s "$src/$f" "$dir/$f"; then
            log "tools/$name/$f unchanged"
        else
            cp "$src/$f" "$dir/$f"
            log "tools/$name/$f updated: review and commit it"
        fi
    done
    out=$(out_dir)
fi

tags=$(setting tags)
ldflags=$(setting ldflags)
local_module=$(setting local)

if [[ -n $local_module ]]; then
    # go mod download checks the module against go.sum before it is copied.
    origin=$(cd "$src" && "${go_env[@]}" go mod download -json "$local_module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -d $origin ]] || die "build.conf: local=$local_module: not downloaded (a module of tools/$name/go.mod?)"
    rm -rf "$src/local" && mkdir -p "$src/local" && cp -R "$origin" "$src/local/module"
    chmod -R u+w "$src/local/module"
    [[ -d $dir/overlay ]] && cp -R "$dir/overlay/." "$src/local/module/"
    (cd "$src" && "${go_env[@]}" go mod edit -replace="$local_module=./local/module")
    log "building $local_module from a copy with tools/$name/overlay/ laid over it"
fi
step "downloading the modules ${binaries[*]} need (checked against tools/$name/go.sum)"
(cd "$src" && run_step "downloading modules" "$logs/download.log" zips 1200 \
    "${go_env[@]}" bash -c 'go list -mod=readonly -tags="$2" -deps -f "{{.ImportPath}}" "${@:3}" >"$1"' \
    _ "$logs/packages.txt" "$tags" "${packages[@]}")
total=$(wc -l <"$logs/packages.txt")
log "$total packages in the build"

step "compiling ${binaries[*]} (go build -v; tags: ${tags:-none}; CGO_ENABLED=0)"
tmp=$out.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
compiled() { echo "$(grep -cv '^go: ' "$logs/build.log" 2>/dev/null || true) of $total packages compiled"; }
(cd "$src" && run_step "compiling" "$logs/build.log" compiled 3600 \
    "${go_env[@]}" go build -mod=readonly -v -tags="$tags" -ldflags="-s -w $ldflags" -o "$tmp/" "${packages[@]}")
for binary in "${binaries[@]}"; do
    [[ -x $tmp/$binary ]] || die "go build wrote no $binary"
done
{
    echo "built: $(date -u +%FT%TZ) in $((SECONDS - started)) s"
    echo "go: $have"
    echo "tags: $tags"
    echo "packages: $total"
} >"$tmp/build.info"
rm -rf "$out"
mv "$tmp" "$out"
ln -sfn "$(basename "$out")" "$cache/$name"
# Keep the 3 newest builds of this tool (another checkout may pin other versions).
(cd "$cache" && ls -dt "$name"-???????????????? 2>/dev/null | tail -n +4 | while read -r old; do rm -rf "$old"; done)

log "built in $((SECONDS - started)) s: ${binaries[*]}"
echo "$out"
exit 0
}
