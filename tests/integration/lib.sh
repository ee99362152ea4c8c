# Shared setup for the integration tests (sourced).  Needs root.
#
# Every test gets: its own registry (PORTCULLIS_STATE_DIR), an upstream
# namespace with test addresses (198.18.0.0/15, 2001:db8::/32, and the
# link-local 169.254.77.10 routed into it), servers inside it, and a
# portcullisd whose /etc/hosts names the upstream (a private mount namespace).
# Traffic goes only to those addresses.  `cleanup` (trap EXIT) removes all of
# it, also when the test fails.

set -u
PCL_BIN=${PCL_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../build" && pwd)}
PCL_SRC=${PCL_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PORTCULLIS="$PCL_BIN/bin/portcullis"
PORTCULLISD="$PCL_BIN/bin/portcullisd"
HELPERS="$PCL_SRC/tests/integration/helpers"
export PORTCULLISD

T_ID=$$
T_NAME=$(basename "$0" .sh)
T_DIR=$(mktemp -d "/tmp/pcl-$T_NAME.XXXXXX")
chmod 755 "$T_DIR"
export PORTCULLIS_STATE_DIR="/run/pcl-test-$T_ID"
# The interception CA too, so tests leave no CA behind on the machine.
export PORTCULLIS_CA_DIR="$PORTCULLIS_STATE_DIR/ca"
UP_NS="pclt-up-$T_ID"
UP_IF="pcltu$T_ID"
UP_IF=${UP_IF:0:15}
UP4=198.18.0.10
UP4B=198.18.0.11
UP4_HOST=198.18.0.1
UP6=2001:db8::10
UP6_HOST=2001:db8::1
UP_LL=169.254.77.10
T_PIDS=()
T_ROUTES=()
T_SANDBOXES=()
T_CLEANUP=() # commands (eval'd) that undo what a test made beyond the above
DAEMON_PID=
T_FAILS=0
T_PASSES=0
JOURNAL_CURSOR=

log() { echo "[$T_NAME] $*" >&2; }
fail() { log "FAIL: $*"; T_FAILS=$((T_FAILS + 1)); }
pass() { log "ok: $*"; T_PASSES=$((T_PASSES + 1)); }
die() { log "FATAL: $*"; exit 1; }

# check DESCRIPTION CMD...: run CMD, count pass/fail.
check() {
    local what=$1
    shift
    if "$@" >/dev/null; then pass "$what"; else fail "$what"; fi
}

cleanup() {
    local rc=$?
    set +e
    for c in "${T_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1; done
    for s in "${T_SANDBOXES[@]}"; do "$PORTCULLIS" delete "$s" >/dev/null 2>&1; done
    # Anything a failed test left in this registry.
    if [ -d "$PORTCULLIS_STATE_DIR/sandboxes" ]; then
        for d in "$PORTCULLIS_STATE_DIR"/sandboxes/*/; do
            [ -d "$d" ] && "$PORTCULLIS" delete "$(basename "$d")" >/dev/null 2>&1
        done
    fi
    stop_daemon
    for p in "${T_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${T_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$UP_NS" 2>/dev/null
    ip link del "$UP_IF" 2>/dev/null
    for r in "${T_ROUTES[@]}"; do ip $r 2>/dev/null; done
    if [ -f "$PORTCULLIS_STATE_DIR/portcullisd.log" ] &&
        grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$PORTCULLIS_STATE_DIR/portcullisd.log"; then
        grep -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$PORTCULLIS_STATE_DIR/portcullisd.log" >&2
        fail "sanitizer report in the private daemon's log"
    fi
    if [ -n "${PCL_KEEP:-}" ]; then log "kept $T_DIR"; else rm -rf "$T_DIR"; fi
    rm -rf "$PORTCULLIS_STATE_DIR"
    if [ "$rc" -eq 0 ] && [ "$T_FAILS" -gt 0 ]; then rc=1; fi
    echo "$T_NAME: $T_PASSES passed, $T_FAILS failed"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_root() {
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
}

ensure_journal() {
    if [ ! -S /run/systemd/journal/socket ]; then
        log "starting systemd-journald"
        /lib/systemd/systemd-journald >/dev/null 2>&1 &
        for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
    fi
    [ -S /run/systemd/journal/socket ] || die "no journal"
}

# Routes that keep test ranges from ever leaving the machine, whatever
# happens to the upstream namespace: blackholes below our connected routes.
add_safety_routes() {
    local r
    for r in "198.18.0.0/15" "169.254.77.0/24"; do
        if ! ip -4 route show table main | grep -q "^blackhole $r"; then
            ip -4 route add blackhole "$r" metric 4000 && T_ROUTES+=("-4 route del blackhole $r metric 4000")
        fi
    done
    if ! ip -6 route show table main | grep -q "^blackhole 2001:db8::/32"; then
        ip -6 route add blackhole 2001:db8::/32 metric 4000 && T_ROUTES+=("-6 route del blackhole 2001:db8::/32 metric 4000")
    fi
}

setup_upstream() {
    add_safety_routes
    ip netns add "$UP_NS" || die "ip netns add"
    ip link add "$UP_IF" type veth peer name eth0 netns "$UP_NS" || die "veth"
    ip addr add "$UP4_HOST/24" dev "$UP_IF"
    ip addr add "$UP6_HOST/64" dev "$UP_IF" nodad
    ip link set "$UP_IF" up
    ip -n "$UP_NS" link set lo up
    ip -n "$UP_NS" addr add "$UP4/24" dev eth0
    ip -n "$UP_NS" addr add "$UP4B/24" dev eth0
    ip -n "$UP_NS" addr add "$UP6/64" dev eth0 nodad
    ip -n "$UP_NS" addr add "$UP_LL/32" dev eth0
    ip -n "$UP_NS" link set eth0 up
    ip -n "$UP_NS" route add default via "$UP4_HOST"
    ip -n "$UP_NS" -6 route add default via "$UP6_HOST"
    ip route add "$UP_LL/32" dev "$UP_IF"
    # Make sure the test addresses go to our namespace and nowhere else.
    for a in "$UP4" "$UP_LL"; do
        ip route get "$a" | grep -q "dev $UP_IF" || die "route to $a does not use $UP_IF"
    done
    ip -6 route get "$UP6" | grep -q "dev $UP_IF" || die "route to $UP6 does not use $UP_IF"
}

# start_server NAME BIND PORT MODE [ARGS...]: a server in the upstream
# namespace, logging to $T_DIR/NAME.log.
start_server() {
    local name=$1 bind=$2 port=$3 mode=$4
    shift 4
    : >"$T_DIR/$name.log"
    ip netns exec "$UP_NS" /usr/bin/python3 "$HELPERS/upstream.py" --bind "$bind" --port "$port" \
        --mode "$mode" --log "$T_DIR/$name.log" "$@" >"$T_DIR/$name.out" 2>&1 &
    T_PIDS+=($!)
    for _ in $(seq 100); do grep -q ready "$T_DIR/$name.out" 2>/dev/null && return 0; sleep 0.05; done
    die "server $name did not start: $(cat "$T_DIR/$name.out")"
}

# Number of connections / requests a server saw.
server_connects() { grep -c '^CONNECT' "$T_DIR/$1.log" || true; }
server_requests() { grep -c "^REQUEST $2" "$T_DIR/$1.log" || true; }

# The daemon sees the upstream names through its own /etc/hosts.
write_hosts() {
    cat >"$T_DIR/hosts" <<HOSTS
127.0.0.1 localhost
::1 localhost
$UP4 up.test both.test
$UP6 up.test both.test
$UP4B other.test
$UP_LL metadata.test
HOSTS
}

# A port of the test's own, so a daemon serving the host (or another test)
# does not collide with ours; the tool reads it from the registry.
DAEMON_PORT=$((15100 + T_ID % 10000)) # below the ephemeral port range
# The daemon's command line (same PID through to portcullisd), for
# start_daemon and for tests that start it another way.
DAEMON_ARGV=(unshare -m --propagation slave sh -c
    'mount --bind "$0" /etc/hosts && d=$1 j=$2 && shift 2 && exec "$d" --events-jsonl "$j" "$@"'
    "$T_DIR/hosts" "$PORTCULLISD" "$T_DIR/events.jsonl" --port "$DAEMON_PORT")
start_daemon() {
    write_hosts
    mkdir -p "$PORTCULLIS_STATE_DIR"
    rm -f "$PORTCULLIS_STATE_DIR/daemon.port"
    "${DAEMON_ARGV[@]}" "$@" >>"$T_DIR/daemon.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 200); do
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        [ -s "$PORTCULLIS_STATE_DIR/daemon.port" ] && return 0
        sleep 0.05
    done
    cat "$T_DIR/daemon.log" >&2
    die "portcullisd did not start"
}

# Stop our daemon; it must exit 0 on SIGTERM, and (in the sanitizer build)
# without any sanitizer report in its log.
stop_daemon() {
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
        local rc=$?
        DAEMON_PID=
        [ "$rc" -eq 0 ] || fail "portcullisd exited with status $rc on SIGTERM"
    fi
    if [ -f "$T_DIR/daemon.log" ] &&
        grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T_DIR/daemon.log"; then
        grep -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T_DIR/daemon.log" >&2
        fail "sanitizer report in the daemon's log"
        mv "$T_DIR/daemon.log" "$T_DIR/daemon.log.reported"
    fi
}

# write_policy FILE <<EOF ... : a policy file readable by the tool.
write_policy() { cat >"$1"; }

# sbrun POLICY CMD...: portcullis run with that policy; prints the command's output.
sbrun() {
    local pol=$1
    shift
    "$PORTCULLIS" run --policy "$pol" -- "$@"
}

mark_journal() {
    JOURNAL_CURSOR=$(journalctl --show-cursor -n 0 -q 2>/dev/null | sed -n 's/^-- cursor: //p')
    if [ -z "$JOURNAL_CURSOR" ]; then
        JOURNAL_CURSOR=$(journalctl -o json -n 1 2>/dev/null | python3 -c 'import json,sys
for l in sys.stdin: print(json.loads(l)["__CURSOR"])')
    fi
}

# journal_find KEY=VALUE...: wait (10 s) for a portcullisd entry after the
# mark with all those fields; print it as JSON.  Reads everything after the
# cursor and filters itself (journalctl's --after-cursor + match skips one).
journal_find() {
    local deadline=$((SECONDS + 10)) out
    while [ $SECONDS -lt $deadline ]; do
        out=$(journalctl -o json --after-cursor="$JOURNAL_CURSOR" 2>/dev/null |
            python3 "$HELPERS/jfilter.py" SYSLOG_IDENTIFIER=portcullisd "$@") && {
            echo "$out"
            return 0
        }
        sleep 0.2
    done
    return 1
}
