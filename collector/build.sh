#!/usr/bin/env bash
# Builds the mystocks-otel OpenTelemetry Collector from Go modules, pinned and cached.
#
# The OpenTelemetry Collector Builder (ocb, pinned in builder-config.yaml's "# ocb:" line)
# generates the distribution's sources from collector/builder-config.yaml; they are then
# compiled against the committed lock, collector/dist/go.mod and go.sum, with
# `go build -mod=readonly`: every module comes from the Go module proxy and must match
# go.sum's hash. All Go state (GOPATH, GOMODCACHE, GOCACHE, the builder, telemetry) stays
# in the cache directory; nothing else on the machine is touched.
#
#   collector/build.sh                prints the binary's path (builds it once, then cached)
#   collector/build.sh --path         prints where the binary for these pins lives; builds nothing
#   collector/build.sh --update-lock  after a pin change: the builder re-resolves the module
#                                     graph (go mod tidy) into collector/dist/go.{mod,sum}, then builds
#   OTELCOL_CACHE=DIR                 cache somewhere else
#   OTELCOL_REBUILD=1                 rebuild even if the binary exists
#   OTELCOL_VERBOSE=1                 stream the go commands' output (go build -v: a line a package)
#   OTELCOL_GO=/path/to/go            the toolchain (default: go on PATH, else /usr/local/go/bin/go)
#   GOPROXY                           respected if set (default https://proxy.golang.org)
#
# The binary is $cache/otelcol-<key>, the key a hash of builder-config.yaml, dist/go.mod,
# dist/go.sum, this script and scripts/go-lib.sh: a pin bump or a recipe change builds a new binary instead of
# reusing a stale one. $cache/otelcol is a symlink to the newest build.
#
# Exit status: 0 built (or cached); 2 the toolchain or the module proxy is unavailable (no
# Go, Go older than go.mod's `go` line, network down, a module version the proxy no longer
# serves); 1 anything else (the lock does not match the manifest, a checksum mismatch, a
# compile error).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
go_lib=$(dirname "$here")/scripts/go-lib.sh  # the toolchain and run_step, shared
manifest=$here/builder-config.yaml
lock_mod=$here/dist/go.mod
lock_sum=$here/dist/go.sum
cache=${OTELCOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mystocks-otel}
work=$cache/collector-build
interval=${OTELCOL_PROGRESS_SECONDS:-15}

log() { echo "collector/build.sh: $*" >&2; }
die() { log "$*"; exit 1; }
unavailable() { log "$*"; exit 2; }
# shellcheck source=../scripts/go-lib.sh
source "$go_lib"

mode=build
case ${1:-} in
    "") ;;
    --path) mode=path ;;
    --update-lock) mode=update-lock ;;
    -h | --help) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac
[[ -r $manifest ]] || die "missing $manifest"

binary_path() {
    [[ -r $lock_mod && -r $lock_sum ]] || die "missing the lock $lock_mod / go.sum: run $0 --update-lock"
    local key
    key=$(cat "$manifest" "$lock_mod" "$lock_sum" "$self" "$go_lib" | sha256sum | cut -c1-16)
    echo "$cache/otelcol-$key"
}

if [[ $mode != update-lock ]]; then
    binary=$(binary_path)
    if [[ $mode == path ]] || [[ -x $binary && -z ${OTELCOL_REBUILD:-} ]]; then
        echo "$binary"
        exit 0
    fi
fi

# One build at a time per cache (parallel test sessions share it). Children get the lock
# fd closed (9>&-), so a build.sh killed by a timeout releases it at once.
mkdir -p "$cache" "$work"
exec 9>"$cache/.otelcol-build.lock"
if command -v flock >/dev/null; then
    flock -n 9 || { log "waiting for another build in $cache"; flock -w 3600 9 || die "lock timeout"; }
    if [[ $mode == build && -x $binary && -z ${OTELCOL_REBUILD:-} ]]; then
        echo "$binary"   # built by the build we waited for
        exit 0
    fi
fi

started=$SECONDS
step_no=0
steps=5
[[ $mode == update-lock ]] && steps=6
step() { step_no=$((step_no + 1)); log "[$step_no/$steps] $*"; }

# -- the toolchain, with every piece of Go state inside $work ---------------------------------
step "toolchain"
verbose=${OTELCOL_VERBOSE:-}
sum_name=collector/dist/go.sum
need=""
[[ -r $lock_mod ]] && need=$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' "$lock_mod")
go_toolchain "${OTELCOL_GO:-}" OTELCOL_GO "$need" collector/dist/go.mod

# -- the builder, pinned by the manifest's "# ocb:" line ---------------------------------------
ocb_version=$(sed -n 's|^# ocb: go.opentelemetry.io/collector/cmd/builder \(v[0-9][0-9.]*\)$|\1|p' "$manifest")
[[ -n $ocb_version ]] || die "$manifest has no '# ocb: go.opentelemetry.io/collector/cmd/builder vX.Y.Z' line"
ocb=$work/tools/builder-$ocb_version/builder
step "the Collector Builder $ocb_version"
if [[ ! -x $ocb ]]; then
    run_step "installing the builder (go install)" "$work/install.log" "" 900 \
        "${go_env[@]}" GOBIN="$(dirname "$ocb")" go install "go.opentelemetry.io/collector/cmd/builder@$ocb_version"
else
    log "cached: $ocb"
fi

# -- --update-lock: the builder's own go mod tidy writes the lock -----------------------------
if [[ $mode == update-lock ]]; then
    step "re-resolving the module graph for builder-config.yaml (builder: go mod tidy, strict versions)"
    rm -rf "$work/lock" && mkdir -p "$work/lock/otelcol-dist"
    # Seeded with the current go.sum, so modules that stay are checked against it.
    [[ -r $lock_sum ]] && cp "$lock_sum" "$work/lock/otelcol-dist/go.sum"
    (cd "$work/lock" && run_step "resolving modules" "$work/lock.log" zips 1800 \
        "${go_env[@]}" "$ocb" --config="$manifest" --skip-compilation --skip-strict-versioning=false)
    mkdir -p "$here/dist"
    for f in go.mod go.sum; do
        if cmp -s "$work/lock/otelcol-dist/$f" "$here/dist/$f"; then
            log "collector/dist/$f unchanged"
        else
            cp "$work/lock/otelcol-dist/$f" "$here/dist/$f"
            log "collector/dist/$f updated: review and commit it"
        fi
    done
    binary=$(binary_path)
fi

# -- sources: generated from the manifest, built against the lock ----------------------------
step "generating the sources from builder-config.yaml"
gen=$work/gen
rm -rf "$gen" && mkdir -p "$gen"
(cd "$gen" && run_step "generating" "$work/generate.log" "" 120 \
    "$ocb" --config="$manifest" --skip-get-modules --skip-compilation)
src=$gen/otelcol-dist
[[ -r $src/components.go ]] || die "the builder wrote no $src/components.go (see $work/generate.log)"
cp "$lock_mod" "$lock_sum" "$src/"

# The lock must require exactly what the manifest pins, or it was not made from it.
requires=$(awk '/^require \($/ {r = 1; next} r && /^\)/ {r = 0; next}
                r {print $1, $2} /^require [^(]/ {print $2, $3}' "$lock_mod")
stale=()
while read -r module version; do
    grep -qxF "$module $version" <<<"$requires" || stale+=("$module $version")
done < <(sed -n 's/^ *- gomod: *\([^ ]*\) \(v[^ ]*\) *$/\1 \2/p' "$manifest")
grep -qxF "go.opentelemetry.io/collector/otelcol $ocb_version" <<<"$requires" \
    || stale+=("go.opentelemetry.io/collector/otelcol $ocb_version (the builder's core version)")
if ((${#stale[@]})); then
    printf '  not required by collector/dist/go.mod: %s\n' "${stale[@]}" >&2
    die "the lock collector/dist/go.{mod,sum} is stale for builder-config.yaml: run" \
        "collector/build.sh --update-lock and commit collector/dist/"
fi

# -- modules: only those the build needs, each checked against go.sum ------------------------
step "downloading the modules the build needs (checked against collector/dist/go.sum)"
# The package list goes to its own file, so the log holds only go's messages and errors.
(cd "$src" && run_step "downloading modules" "$work/download.log" zips 1200 \
    "${go_env[@]}" bash -c 'go list -mod=readonly -deps -f "{{.ImportPath}}" . >"$1"' _ "$work/packages.txt")
packages=$(wc -l <"$work/packages.txt")
log "$packages packages in the build"

# -- compile ---------------------------------------------------------------------------------
step "compiling (go build -v; -trimpath, CGO_ENABLED=0)"
tmp=$binary.tmp.$$
trap 'rm -f "$tmp"' EXIT
compiled() { echo "$(grep -cv '^go: ' "$work/build.log" 2>/dev/null || true) of $packages packages compiled"; }
(cd "$src" && run_step "compiling" "$work/build.log" compiled 3600 \
    "${go_env[@]}" go build -mod=readonly -v -ldflags="-s -w" -o "$tmp" .)
version=$("$tmp" --version 2>&1) || die "the new binary does not run: $version"
mv "$tmp" "$binary"
ln -sfn "$(basename "$binary")" "$cache/otelcol"
{
    echo "built: $(date -u +%FT%TZ) in $((SECONDS - started)) s"
    echo "version: $version"
    echo "go: $have"
    echo "builder: $ocb_version"
} >"$binary.info"

# Keep the 3 newest builds (another checkout may pin other versions); drop the old Debian-sid
# build's leftovers (its apt lists and .debs; its unpacked tree was already deleted).
(cd "$cache" && ls -t otelcol-* 2>/dev/null | grep -v '\.info$\|\.tmp\.' | tail -n +4 \
    | while read -r old; do rm -f "$old" "$old.info"; done)
rm -rf "$cache/sid-apt" "$cache/debs" "$cache/tree"

log "built in $((SECONDS - started)) s: $version"
echo "$binary"
