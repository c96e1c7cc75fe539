# Sourced by collector/build.sh and scripts/build-go-tool.sh (part of both builds' cache keys):
# the Go toolchain with every piece of Go state in one folder, and go steps that print progress
# and fail in one line.
#
# The caller defines log, die and unavailable (exit 2: the toolchain or the proxy is missing),
# and sets:
#   work      the folder of Go's state: GOPATH, GOMODCACHE, GOCACHE, its config
#   interval  seconds between two "still ..." lines
#   verbose   non-empty: stream the go commands' output
#   sum_name  the lock's name in messages (tools/NAME/go.sum, collector/dist/go.sum)

# go_toolchain GO OVERRIDE NEED NEEDED_BY: the toolchain GO (empty: go on PATH, else
# /usr/local/go/bin/go; OVERRIDE names the variable that sets it), with the Go environment
# exported; fails (2) when it is older than NEED. Sets go_env (the prefix for go commands) and
# have (its version).
go_toolchain() {
    local go_bin=$1 override=$2 need=$3 needed_by=$4
    [[ -n $go_bin ]] || go_bin=$(command -v go || true)
    [[ -n $go_bin ]] || go_bin=/usr/local/go/bin/go
    [[ -x $go_bin ]] || unavailable "no Go toolchain (install Go, or set $override=/path/to/go)"
    unset GOROOT GOOS GOARCH GOFLAGS GOWORK GOBIN GOEXPERIMENT
    PATH=$(dirname "$go_bin"):$PATH
    export PATH GOENV=off GOTOOLCHAIN=local GOTELEMETRY=off GO111MODULE=on CGO_ENABLED=0 GOWORK=off \
           GOFLAGS="-trimpath -buildvcs=false -modcacherw" \
           GOPATH=$work/gopath GOMODCACHE=$work/gopath/pkg/mod GOCACHE=$work/gocache \
           GOPROXY=${GOPROXY:-https://proxy.golang.org}
    # Go keeps local telemetry counters under the user's config dir: give it ours, and off.
    go_env=(env XDG_CONFIG_HOME="$work/config")
    [[ -e $work/config/go/telemetry/mode ]] || "${go_env[@]}" go telemetry off 2>/dev/null || true
    have=$("${go_env[@]}" go env GOVERSION 2>/dev/null) || unavailable "$go_bin does not run"
    have=${have#go}
    if [[ -n $need && $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1) != "$need" ]]; then
        unavailable "Go $have is older than the go $need that $needed_by needs" \
            "(GOTOOLCHAIN=local: no toolchain is downloaded)"
    fi
    log "go $have ($go_bin), GOPROXY=$GOPROXY, Go state in $work"
}

# run_step WHAT LOGFILE PROGRESS LIMIT COMMAND...: COMMAND with its output in LOGFILE (streamed
# when verbose), a "still WHAT" line every $interval s (with PROGRESS's output, a function, if
# given), killed after LIMIT s. On failure the log's tail, then exit 2 when the proxy or the
# network is to blame, else 1.
run_step() {
    local what=$1 logfile=$2 progress=$3 limit=$4
    shift 4
    local t0=$SECONDS rc=0 hb
    (
        # sleep's stdio is not ours: once this loop is killed, an orphaned sleep must not
        # hold a caller's stdout/stderr pipe open for up to $interval s.
        while sleep "$interval" </dev/null >/dev/null 2>&1; do
            kill -0 $$ 2>/dev/null || exit 0   # the build script was killed
            msg="still $what, $((SECONDS - t0)) s"
            [[ -n $progress ]] && msg+=" ($($progress))"
            log "$msg"
        done
    ) 9>&- &
    hb=$!
    if [[ -n $verbose ]]; then
        timeout "$limit" "$@" 2>&1 9>&- | tee "$logfile" >&2 || rc=$?
    else
        timeout "$limit" "$@" >"$logfile" 2>&1 9>&- || rc=$?
    fi
    kill "$hb" 2>/dev/null || true
    wait "$hb" 2>/dev/null || true
    if ((rc != 0)); then
        [[ -n $verbose ]] || grep -v '^go: downloading' "$logfile" | tail -n 30 >&2 || true
        ((rc == 124)) && die "$what timed out after $limit s"
        if grep -q 'SECURITY ERROR\|checksum mismatch' "$logfile"; then
            die "$what failed: a module does not match $sum_name (see above)"
        fi
        if grep -Eq 'dial tcp|no such host|connection (refused|reset)|i/o timeout|TLS handshake|network is unreachable|proxyconnect|server response|40[34] Not Found|403 Forbidden|410 Gone|GOPROXY=off|module lookup disabled' "$logfile"; then
            unavailable "$what failed: the module proxy ($GOPROXY) or the network is unavailable (see above)"
        fi
        die "$what failed (see above; full log: $logfile)"
    fi
    log "$what: $((SECONDS - t0)) s"
}

# zips: how many module zips the cache holds (a download step's progress).
zips() { find "$GOMODCACHE/cache/download" -name '*.zip' 2>/dev/null | wc -l | sed 's/$/ module zips in the cache/'; }
