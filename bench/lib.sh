# bench/lib.sh: setup shared by the benchmark entry points run.sh,
# run-http.sh and run-tls.sh (sourced, not run).
#
# Everything created goes into the registries below as it is created, and
# bench_cleanup (installed as the EXIT trap by bench_init) removes it, also
# on failure or Ctrl-C.  Only processes started here are killed, by PID.

log() { echo "[bench] $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/nft_tables.sh"
. "$(dirname "${BASH_SOURCE[0]}")/cpu.sh"
die() {
    log "FATAL: $*"
    exit 1
}

PIDS=()      # processes we started (killed by PID, nothing else)
NETNSES=()   # namespaces we created
LINKS=()     # host-side links we created (the peer goes with it)
UNDO=()      # commands that undo iptables rules / routes, run in reverse
SANDBOXES=() # "STATE_DIR NAME"
STATE_DIRS=()
D= # the temp dir
PCL=

bench_cleanup() {
    local rc=$? i s p n l
    set +e
    trap - EXIT INT TERM
    for s in "${SANDBOXES[@]}"; do
        PORTCULLIS_STATE_DIR=${s%% *} "$PCL" delete "${s#* }" >/dev/null 2>&1 ||
            log "warning: could not delete sandbox ${s#* }"
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do eval "${UNDO[i]}" || log "warning: '${UNDO[i]}' failed"; done
    for n in "${NETNSES[@]}"; do ip netns del "$n" 2>/dev/null; done
    for l in "${LINKS[@]}"; do ip link del "$l" 2>/dev/null; done
    for s in "${STATE_DIRS[@]}"; do rm -rf "$s"; done
    nft_tables_drop_new_empty
    if [ -n "$D" ]; then
        if [ -n "${BENCH_KEEP:-}" ]; then log "kept $D"; else rm -rf "$D"; fi
    fi
    exit "$rc"
}

bench_init() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    [ "$(id -u)" = 0 ] || {
        echo "$0 needs root (namespaces, iptables)" >&2
        exit 77
    }
    nft_tables_note
}

# pcl_bins DIR: PCL and PCLD from a build directory.
pcl_bins() {
    PCL_BIN=$(cd "$1" 2>/dev/null && pwd) || die "PCL_BIN: no such directory"
    PCL=$PCL_BIN/bin/portcullis
    PCLD=$PCL_BIN/bin/portcullisd
    [ -x "$PCL" ] && [ -x "$PCLD" ] || die "no bin/portcullis and bin/portcullisd in $PCL_BIN (build first, or set PCL_BIN)"
}

need_pkg() { # COMMAND PACKAGE: Debian package, installed only when missing
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null || die "cannot install $2"
}

# make_tmp HERE: the temp dir, and tcpbench compiled into it ($TB).
make_tmp() {
    D=$(mktemp -d /tmp/pcl-bench.XXXXXX) || die "mktemp"
    chmod 755 "$D" # the sandboxed client runs as an unprivileged user
    TB=$D/tcpbench
    cc -O2 -Wall -o "$TB" "$1/tcpbench.c" || die "cannot compile tcpbench.c"
    chmod 755 "$TB"
}

# pick_block FIRST LAST COUNT: NET = the first B in FIRST, FIRST+COUNT, ... LAST
# such that no address or route on the host uses 198.19.B.0/24 ...
# 198.19.(B+COUNT-1).0/24.
pick_block() {
    local first=$1 last=$2 count=$3 b k used
    NET=
    for b in $(seq "$first" "$count" "$last"); do
        used=
        for ((k = 0; k < count; k++)); do
            if ip -4 addr show | grep -q "inet 198\.19\.$((b + k))\." ||
                ip -4 route show table all | grep -q "198\.19\.$((b + k))\."; then used=1; fi
        done
        [ -z "$used" ] && NET=$b && break
    done
    [ -n "$NET" ] || die "no free 198.19.x.0/24 block"
    UP=198.19.$NET.10
    UP_HOST=198.19.$NET.1
}
net_of() { echo "198.19.$((NET + $1))"; }

# Never let these addresses leave the machine: a blackhole below our
# connected routes.  Metric 4000 (as the tests); if someone else's is already
# there, we add our own at 4001 so that we never depend on theirs.
add_blackhole() {
    local m
    for m in 4000 4001; do
        if ip -4 route add blackhole 198.18.0.0/15 metric $m 2>/dev/null; then
            UNDO+=("ip -4 route del blackhole 198.18.0.0/15 metric $m")
            break
        fi
    done
    ip -4 route show table main | grep -q "^blackhole 198.18.0.0/15" || die "no blackhole route for 198.18.0.0/15"
}

mklink() { # HOSTIF NS IDX: veth HOSTIF <-> eth0 in NS, 198.19.(NET+IDX).1 / .x
    local hif=$1 ns=$2 idx=$3 host
    host=$(net_of "$idx").1
    ip netns add "$ns" || die "ip netns add $ns"
    NETNSES+=("$ns")
    ip link add "$hif" type veth peer name eth0 netns "$ns" || die "ip link add $hif"
    LINKS+=("$hif")
    sysctl -qw "net.ipv6.conf.$hif.disable_ipv6=1" 2>/dev/null
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null
    ip addr add "$host/24" dev "$hif"
    ip link set "$hif" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
}

# client_link NS HOSTIF IDX: a client namespace on link IDX, routed to the
# upstream subnet through the host.
client_link() {
    local ns=$1 hif=$2 idx=$3 net
    net=$(net_of "$idx")
    mklink "$hif" "$ns" "$idx"
    ip -n "$ns" addr add "$net.2/24" dev eth0
    ip -n "$ns" route add "198.19.$NET.0/24" via "$net.1"
}

# route_link HOSTIF IDX: plain routing between link IDX and the upstream link
# (forwarding on these two interfaces only; the global ip_forward is left
# alone), FORWARD accept both ways.
route_link() {
    local hif=$1 net
    net=$(net_of "$2")
    ip -n "$UP_NS" route add "$net.0/24" via "$UP_HOST"
    sysctl -qw "net.ipv4.conf.$hif.forwarding=1" "net.ipv4.conf.$UP_IF.forwarding=1" ||
        die "per-interface forwarding"
    iptables -w -I FORWARD -i "$hif" -o "$UP_IF" -j ACCEPT &&
        UNDO+=("iptables -w -D FORWARD -i $hif -o $UP_IF -j ACCEPT")
    iptables -w -I FORWARD -i "$UP_IF" -o "$hif" -j ACCEPT &&
        UNDO+=("iptables -w -D FORWARD -i $UP_IF -o $hif -j ACCEPT")
}

# redirect_link HOSTIF PORT: every TCP connection from link HOSTIF goes to a
# local PORT (a proxy that recovers the original destination).
redirect_link() {
    local hif=$1 port=$2
    iptables -w -t nat -A PREROUTING -i "$hif" -p tcp -j REDIRECT --to-ports "$port" &&
        UNDO+=("iptables -w -t nat -D PREROUTING -i $hif -p tcp -j REDIRECT --to-ports $port")
    iptables -w -I INPUT -i "$hif" -p tcp --dport "$port" -j ACCEPT &&
        UNDO+=("iptables -w -D INPUT -i $hif -p tcp --dport $port -j ACCEPT")
}

# upstream_ns ID: the upstream namespace on link 0, UP = 198.19.NET.10.
upstream_ns() {
    UP_NS=pclb-up-$1
    UP_IF=pbu$1
    UP_IF=${UP_IF:0:15}
    mklink "$UP_IF" "$UP_NS" 0
    ip -n "$UP_NS" addr add "$UP/24" dev eth0
    ip -4 route get "$UP" | grep -q "dev $UP_IF" || die "route to $UP does not use $UP_IF"
}

# start_server PORT: tcpbench server in the upstream namespace (PORT .. PORT+3).
start_server() {
    ip netns exec "$UP_NS" "$TB" server "$UP" "$1" "$D/server.stats" >"$D/server.out" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do grep -q ready "$D/server.out" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$D/server.out" || die "server did not start: $(cat "$D/server.out")"
}

server_stat() { # NAME: one of the server's counters, fresh
    kill -USR1 "$SERVER_PID"
    sleep 0.2
    awk -v k="$1" '$1 == k {print $2}' "$D/server.stats"
}

# measure_ka MODE ROUND OUT CMD...: one keep-alive run; CMD runs wrk, whose
# output goes to OUT.  Records (through the caller's record) ka_rps, ka_p50,
# ka_p99, and per request the CPU time of the proxy process PROC[MODE] (in
# all, user, system), of journald and of the whole machine, and the cores
# busy (ka_cpu_proxy, ka_cpu_proxy_user, ka_cpu_proxy_sys, ka_cpu_journald,
# ka_cpu_machine, ka_busy).  Returns wrk's or the parser's failure.
measure_ka() {
    local mode=$1 round=$2 out=$3 jd pb jb mb pa ja ma rc v rps p50 p99 n busy cms pus pss jus
    shift 3
    jd=$(pidof -s systemd-journald)
    pb=$(cpu_ticks_split "${PROC[$mode]:-}")
    jb=$(cpu_ticks "$jd")
    mb=$(machine_ticks)
    "$@" >"$out" 2>&1
    rc=$?
    ma=$(machine_ticks)
    pa=$(cpu_ticks_split "${PROC[$mode]:-}")
    ja=$(cpu_ticks "$jd")
    if [ $rc -eq 0 ] && v=$(python3 "$HERE/report_http.py" wrk "$out" 2>>"$D/runs.log"); then
        read -r rps p50 p99 n _ <<<"$v"
        record "$mode" ka_rps "$round" "$rps"
        record "$mode" ka_p50 "$round" "$p50"
        record "$mode" ka_p99 "$round" "$p99"
        read -r busy cms pus pss jus < <(op_cpu "$mb" "$ma" "$pb" "$pa" "$jb" "$ja" "$n")
        record "$mode" ka_busy "$round" "$busy"
        record "$mode" ka_cpu_machine "$round" "$cms"
        if [ "$pus" != - ]; then
            record "$mode" ka_cpu_proxy "$round" "$(awk -v u="$pus" -v s="$pss" 'BEGIN {printf "%.1f", u + s}')"
            record "$mode" ka_cpu_proxy_user "$round" "$pus"
            record "$mode" ka_cpu_proxy_sys "$round" "$pss"
        fi
        [ "$jus" != - ] && record "$mode" ka_cpu_journald "$round" "$jus"
        log "  $mode ka round $round: $v"
        return 0
    fi
    for k in rps p50 p99 cpu_proxy cpu_journald; do record "$mode" "ka_$k" "$round" fail; done
    log "  $mode ka round $round: FAILED (rc $rc): $(tail -2 "$out" | tr '\n' ' ')"
    return 1
}

free_port() { # a TCP port nobody listens on, from $1 up
    local p=$1
    while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
    echo "$p"
}

# setup_events: EVFLAGS for portcullisd and EVENTS_DESC, from EVENTS.
EVFLAGS=()
EVENTS_DESC=
setup_events() {
    if [ "$EVENTS" = auto ]; then
        if pgrep -x systemd-journal >/dev/null 2>&1 || pgrep -x systemd-journald >/dev/null 2>&1; then
            EVENTS=journal
        else
            EVENTS=stderr
        fi
    fi
    case $EVENTS in
    journal) EVENTS_DESC="events to the systemd journal" ;;
    stderr)
        EVFLAGS=(--no-journal)
        EVENTS_DESC="events to stderr, into a file (no journald running)"
        ;;
    *) die "BENCH_EVENTS must be auto, journal or stderr" ;;
    esac
}

# start_pcld MODE STATE_DIR PORT HOSTS_FILE DAEMON-FLAGS...: a portcullisd of
# our own, in a private mount namespace whose /etc/hosts is HOSTS_FILE (so
# that it resolves the benchmark's host names; as tests/integration/lib.sh
# does), or as it is when HOSTS_FILE is "-" (a policy of addresses only).
# Sets PROC[MODE].  unshare and sh exec, so the PID is the daemon's.
start_pcld() {
    local mode=$1 sd=$2 port=$3 hosts=$4
    shift 4
    mkdir -p "$sd" && STATE_DIRS+=("$sd")
    if [ "$hosts" = - ]; then
        PORTCULLIS_STATE_DIR=$sd "$PCLD" --port "$port" "${EVFLAGS[@]}" "$@" >>"$D/daemon-$mode.log" 2>&1 &
    else
        PORTCULLIS_STATE_DIR=$sd unshare -m --propagation slave sh -c \
            'mount --bind "$0" /etc/hosts && exec "$@"' \
            "$hosts" "$PCLD" --port "$port" "${EVFLAGS[@]}" "$@" >>"$D/daemon-$mode.log" 2>&1 &
    fi
    PROC[$mode]=$!
    PIDS+=("$!")
    for _ in $(seq 200); do
        [ -s "$sd/daemon.port" ] && break
        kill -0 "${PROC[$mode]}" 2>/dev/null || break
        sleep 0.05
    done
    [ -s "$sd/daemon.port" ] || die "$mode: portcullisd did not start: $(tail -5 "$D/daemon-$mode.log")"
}

# create_sandbox MODE STATE_DIR NAME POLICY
create_sandbox() {
    SANDBOXES+=("$2 $3")
    PORTCULLIS_STATE_DIR=$2 "$PCL" create "$3" --policy "$4" >>"$D/create.log" 2>&1 ||
        die "$1: portcullis create failed: $(tail -3 "$D/create.log")"
    SB_DIR[$1]=$2
    SB_NAME[$1]=$3
}

# prefix MODE: PFX, the command prefix that runs a client as MODE's client.
prefix() {
    case $1 in
    pcl*) PFX=(env "PORTCULLIS_STATE_DIR=${SB_DIR[$1]}" "$PCL" exec "${SB_NAME[$1]}" --) ;;
    *) PFX=(ip netns exec "${CLIENT_NS[$1]}") ;;
    esac
}

# tclient SECONDS MODE CMD...: run CMD as MODE's client, killed after SECONDS.
tclient() {
    local PFX t=$1
    prefix "$2"
    shift 2
    timeout -k 5 "$t" "${PFX[@]}" "$@"
}

declare -A CLIENT_NS SB_NAME SB_DIR PROC

# client_bg SECONDS MODE CMD...: CMD as MODE's client (as tclient:
# killed after SECONDS), in the background, registered for cleanup while it
# runs; CLIENT_PID.  client SECONDS MODE CMD...: the same, waited for.
# Waiting with `wait` instead of running it in the foreground keeps Ctrl-C
# working: timeout puts the client in a process group of its own, out of
# reach of the terminal's SIGINT, and bash defers its INT trap until a
# foreground command ends (and then skips it, taking the child's normal exit
# for "the child handled it"), while `wait` returns at once.
client_bg() {
    local PFX t=$1
    prefix "$2"
    shift 2
    timeout -k 5 "$t" "${PFX[@]}" "$@" &
    CLIENT_PID=$!
    PIDS+=("$CLIENT_PID")
}
client() {
    local rc
    client_bg "$@"
    wait "$CLIENT_PID"
    rc=$?
    forget_pid "$CLIENT_PID"
    return $rc
}
# forget_pid PID: a process we waited for leaves the cleanup list (its PID
# may belong to someone else by the time cleanup runs).
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
