#!/bin/bash
# bench/run.sh: portcullis against no proxy and against HAProxy, side by side
# in one invocation.  Needs root.  See bench/README.md for the method.
#
#   sudo PCL_BIN=/path/to/build bench/run.sh
#
# PCL_BIN        build directory holding bin/portcullis and bin/portcullisd
#                (default ../build next to this script); nothing is built here
#                except the traffic generator bench/tcpbench.c (cc -O2, temp dir)
# BENCH_ROUNDS   repetitions of every measurement, median reported (default 3)
# BENCH_SECS     seconds per bulk / connection-rate run (default 5)
# BENCH_CONC     connections in flight for the connection rate (default 8)
# BENCH_IDLE     idle connections for the memory figure (default 1000)
# BENCH_MODES    subset/order of: noproxy pcl pcl-noident pcl-file pcl-nosplice haproxy
#                haproxy-splice haproxy-log (pcl-file: events to a file, --no-journal)
# BENCH_PERF     1: after the rounds, one more connection-rate run of pcl and of
#                haproxy under `perf record`; top symbols in the notes
# BENCH_EVENTS   auto | journal | stderr: where portcullisd writes its events
#                (auto: the journal when systemd-journald runs, else stderr to a file)
# BENCH_OUT      where the Markdown table goes (default bench/results.md; only its
#                "tcp" section is replaced, run-http.sh's "http" section stays)
#
# Traffic goes only to addresses this script assigns inside namespaces it
# creates (a free /24 of 198.19.0.0/16, inside the blackholed 198.18.0.0/15).
# Everything it creates (namespaces, links, iptables rules, sandboxes, state
# directories, processes, the blackhole route if it added it) is removed on
# exit, also on failure or Ctrl-C.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
CONC=${BENCH_CONC:-8}
IDLE_N=${BENCH_IDLE:-1000}
MODES=${BENCH_MODES:-"noproxy pcl pcl-noident pcl-file pcl-nosplice haproxy haproxy-splice haproxy-log"}
EVENTS=${BENCH_EVENTS:-auto}
OUT=${BENCH_OUT:-$HERE/results.md}

ID=$$
PORT_BULK=5201 # +1 connection rate, +2 idle (echo): see tcpbench.c
PORT_CRR=$((PORT_BULK + 1))
PORT_IDLE=$((PORT_BULK + 2))
HAPROXY_PORT=15002
CLIENT_SLACK=45 # seconds on top of a run before `timeout` kills a client

bench_init
pcl_bins "${PCL_BIN:-$HERE/../build}"
need_pkg cc gcc
need_pkg python3 python3-minimal
need_pkg iptables iptables
need_pkg timeout coreutils
case " $MODES " in *" haproxy"*) need_pkg haproxy haproxy ;; esac
[ "${BENCH_PERF:-}" = 1 ] && need_pkg perf linux-perf
HAPROXY=$(command -v haproxy || true)
for m in $MODES; do
    case $m in
    noproxy | pcl | pcl-noident | pcl-file | pcl-nosplice | haproxy | haproxy-splice | haproxy-log) ;;
    *) die "unknown mode '$m'" ;;
    esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null # idle connections need fds everywhere
make_tmp "$HERE"

# B: upstream link, B+1: no-proxy client, B+2: HAProxy client, B+3: HAProxy+splice client,
# B+4: HAProxy with a journal line per connection.  Blocks from 200 up
# (run-http.sh takes its blocks below 200).
pick_block 200 245 5
add_blackhole
upstream_ns "$ID"
start_server "$PORT_BULK"

# tb SECONDS MODE TCPBENCH-ARGS...: the traffic generator as MODE's client.
tb() {
    local t=$1 m=$2
    shift 2
    tclient "$t" "$m" "$TB" "$@"
}

# ready MODE: wait until one exchange through MODE reaches the upstream server.
ready() {
    local mode=$1 before after
    before=$(server_stat crr_conns)
    for _ in $(seq 40); do
        if tb 15 "$mode" ping "$UP" "$PORT_CRR" >/dev/null 2>>"$D/ready.log"; then
            after=$(server_stat crr_conns)
            [ "$after" -gt "$before" ] || die "$mode: the exchange did not reach the upstream server"
            log "$mode: ready (the upstream server saw the connection)"
            return 0
        fi
        sleep 0.25
    done
    die "$mode: no exchange reached the upstream server: $(tail -3 "$D/ready.log")"
}

# ---- no proxy: routed, forwarding enabled on our two interfaces only ----
setup_noproxy() {
    local ns=pclb-np-$ID hif=pbn$ID
    hif=${hif:0:15}
    client_link "$ns" "$hif" 1
    route_link "$hif" 1
    CLIENT_NS[noproxy]=$ns
    log "noproxy: global ip_forward=$(sysctl -n net.ipv4.ip_forward) (unchanged), forwarding on $hif and $UP_IF"
}

# ---- portcullis: a daemon (own state dir and port) and a sandbox per variant ----
NEXT_DPORT=15101
setup_pcl() { # MODE DAEMON-FLAGS...
    local mode=$1 sd port
    shift
    sd=/run/pcl-bench-$ID-$mode
    port=$(free_port "$NEXT_DPORT")
    NEXT_DPORT=$((port + 1))
    # The policy names addresses only: the daemon needs no /etc/hosts of ours.
    start_pcld "$mode" "$sd" "$port" - "$@"
    cat >"$D/policy.yaml" <<YAML
version: 1
network_policies:
  bench:
    endpoints:
      - allowed_ips: ["$UP/32"]
        ports: [$PORT_BULK, $PORT_CRR, $PORT_IDLE]
YAML
    create_sandbox "$mode" "$sd" "bench-$ID${mode#pcl}" "$D/policy.yaml"
    log "$mode: portcullisd pid ${PROC[$mode]} on port $port ($*), sandbox ${SB_NAME[$mode]}"
}

# ---- HAProxy: REDIRECT from its own client link, original destination ----
setup_haproxy() { # MODE IDX [extra defaults line] [extra global line]
    local mode=$1 idx=$2 extra=${3:-} extra_global=${4:-} ns hif net cfg
    ns=pclb-$mode-$ID
    ns=${ns/haproxy-splice/hs}
    ns=${ns/haproxy-log/hl}
    ns=${ns/haproxy/hp}
    hif=pbh$idx$ID
    hif=${hif:0:15}
    net=$(net_of "$idx")
    client_link "$ns" "$hif" "$idx"
    redirect_link "$hif" "$HAPROXY_PORT"
    cfg=$D/$mode.cfg
    cat >"$cfg" <<CFG
global
    nbthread 1
    maxconn 3000
$extra_global

defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s
$extra

frontend fe
    bind $net.1:$HAPROXY_PORT
    default_backend be

backend be
    # the original destination of the REDIRECTed connection
    server s 0.0.0.0:0
CFG
    "$HAPROXY" -c -q -f "$cfg" >"$D/$mode.log" 2>&1 || die "$mode: config: $(cat "$D/$mode.log")"
    "$HAPROXY" -db -f "$cfg" >>"$D/$mode.log" 2>&1 &
    PROC[$mode]=$!
    PIDS+=("$!")
    CLIENT_NS[$mode]=$ns
    log "$mode: haproxy pid ${PROC[$mode]} on $net.1:$HAPROXY_PORT"
}

setup_events
for m in $MODES; do
    case $m in
    noproxy) setup_noproxy ;;
    pcl) setup_pcl pcl ;;
    pcl-noident) setup_pcl pcl-noident --no-ident ;;
    pcl-file) setup_pcl pcl-file --no-journal ;;
    pcl-nosplice) setup_pcl pcl-nosplice --no-splice ;;
    haproxy) setup_haproxy haproxy 2 ;;
    haproxy-splice) setup_haproxy haproxy-splice 3 "    option splice-auto" ;;
    # One log line per connection into the journal, as portcullis writes one
    # event per decision: the like-for-like comparison of connection rates.
    haproxy-log) setup_haproxy haproxy-log 4 "    log global
    option tcplog" "    log /run/systemd/journal/dev-log local0 info" ;;
    esac
done
for m in $MODES; do ready "$m"; done

RES=$D/results.tsv # mode metric round value
: >"$RES"
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }

# ---- memory: idle connections through a freshly started proxy ----
measure_idle() {
    local mode=$1 pid=${PROC[$1]:-} before after hwm
    [ -n "$pid" ] || return 0
    # Warm-up: a few connections open and close, so that one-time setup
    # (thread pool, first allocations) is not counted per connection.
    tb 60 "$mode" idle "$UP" "$PORT_IDLE" 10 </dev/null >/dev/null 2>>"$D/idle.log"
    sleep 1
    before=$(rss_kib "$pid" VmRSS)
    rm -f "$D/idle.fifo" "$D/idle.out"
    mkfifo "$D/idle.fifo"
    local PFX
    prefix "$mode"
    "${PFX[@]}" "$TB" idle "$UP" "$PORT_IDLE" "$IDLE_N" <"$D/idle.fifo" >"$D/idle.out" 2>>"$D/idle.log" &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    exec 7>"$D/idle.fifo"
    local ok=
    for _ in $(seq 1200); do
        grep -q "^ready" "$D/idle.out" 2>/dev/null && ok=1 && break
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -n "$ok" ]; then
        sleep 2 # let the proxy finish what it does per new flow (ident, events)
        after=$(rss_kib "$pid" VmRSS)
        hwm=$(rss_kib "$pid" VmHWM)
        echo -e "$mode\trss_before\t0\t$before" >>"$RES"
        echo -e "$mode\trss_idle\t0\t$after" >>"$RES"
        echo -e "$mode\trss_hwm\t0\t$hwm" >>"$RES"
        log "$mode: VmRSS $before -> $after KiB with $IDLE_N idle connections, VmHWM $hwm KiB"
    else
        echo -e "$mode\trss_idle\t0\tfail" >>"$RES"
        log "$mode: idle connections FAILED: $(tail -2 "$D/idle.log")"
    fi
    exec 7>&-
    for _ in $(seq 100); do kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$IDLE_PID" 2>/dev/null
    wait "$IDLE_PID" 2>/dev/null
    forget_pid "$IDLE_PID"
    sleep 1
}

# run_one MODE METRIC ROUND: one bulk or connection-rate run.
run_one() {
    local mode=$1 metric=$2 round=$3 out v rc mb ma pb pa jd jb ja bytes n busy cms pus pss jus
    jd=$(pidof -s systemd-journald)
    jb=$(cpu_ticks "$jd")
    mb=$(machine_ticks)
    pb=$(cpu_ticks_split "${PROC[$mode]:-}")
    if [ "$metric" = bulk ]; then
        out=$(tb $((SECS + CLIENT_SLACK)) "$mode" bulk "$UP" "$PORT_BULK" "$SECS" 2>>"$D/runs.log")
    else
        out=$(tb $((SECS + CLIENT_SLACK)) "$mode" crr "$UP" "$PORT_CRR" "$SECS" "$CONC" 2>>"$D/runs.log")
    fi
    rc=$?
    ma=$(machine_ticks)
    pa=$(cpu_ticks_split "${PROC[$mode]:-}")
    ja=$(cpu_ticks "$jd")
    v=${out%% *}
    if [ $rc -ne 0 ] || [ -z "$v" ]; then
        v=fail
        log "  $mode $metric round $round: FAILED (rc $rc): $(tail -1 "$D/runs.log")"
    else
        log "  $mode $metric round $round: $out"
        # bulk prints "Gbit/s bytes seconds": where its CPU went, per GB
        read -r _ bytes _ <<<"$out"
        if [ "$metric" = bulk ] && [ "${bytes:-0}" -gt 0 ] 2>/dev/null; then
            read -r busy cms pus pss < <(bulk_cpu "$mb" "$ma" "$pb" "$pa" "$bytes")
            echo -e "$mode\tbulk_busy\t$round\t$busy\n$mode\tbulk_cpu_machine\t$round\t$cms" >>"$RES"
            [ "$pus" != - ] &&
                echo -e "$mode\tbulk_cpu_proxy_user\t$round\t$pus\n$mode\tbulk_cpu_proxy_sys\t$round\t$pss" >>"$RES"
        fi
        # crr prints "conn/s connections errors": where a connection's CPU went
        read -r _ n _ <<<"$out"
        if [ "$metric" = crr ] && [ "${n:-0}" -gt 0 ] 2>/dev/null; then
            read -r busy cms pus pss jus < <(op_cpu "$mb" "$ma" "$pb" "$pa" "$jb" "$ja" "$n")
            echo -e "$mode\tcrr_busy\t$round\t$busy\n$mode\tcrr_cpu_machine\t$round\t$cms" >>"$RES"
            [ "$pus" != - ] &&
                echo -e "$mode\tcrr_cpu_proxy_user\t$round\t$pus\n$mode\tcrr_cpu_proxy_sys\t$round\t$pss" >>"$RES"
            [ "$jus" != - ] && echo -e "$mode\tcrr_cpu_journald\t$round\t$jus" >>"$RES"
        fi
    fi
    echo -e "$mode\t$metric\t$round\t$v" >>"$RES"
    sleep 1
}

log "idle memory: $IDLE_N connections per proxy"
for m in $MODES; do measure_idle "$m"; done

log "warm-up"
for m in $MODES; do
    { tb 30 "$m" bulk "$UP" "$PORT_BULK" 1 && tb 30 "$m" crr "$UP" "$PORT_CRR" 1 "$CONC"; } \
        >/dev/null 2>>"$D/runs.log" || log "  $m: warm-up failed"
done

# Interleaved rounds, the starting mode rotating, so that drift of a noisy
# machine spreads over every mode instead of landing on one.
read -r -a MODE_LIST <<<"$MODES"
N_MODES=${#MODE_LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < N_MODES; i++)); do
        m=${MODE_LIST[$(((i + r - 1) % N_MODES))]}
        run_one "$m" bulk "$r"
        run_one "$m" crr "$r"
    done
done

NOTES=$D/notes
: >"$NOTES"

# BENCH_PERF=1: where the proxies spend their CPU while accepting, deciding
# and relaying new connections (one more run of each, not counted).
if [ "${BENCH_PERF:-}" = 1 ]; then
    for m in pcl haproxy; do
        case " $MODES " in *" $m "*) ;; *) continue ;; esac
        client_bg $((SECS + CLIENT_SLACK)) "$m" "$TB" crr "$UP" "$PORT_CRR" "$SECS" "$CONC" >"$D/perf-$m.txt" 2>&1
        perf_sample "${PROC[$m]}" "$D/perf-$m.data" "$SECS"
        wait "$CLIENT_PID"
        forget_pid "$CLIENT_PID"
        perf_note "$m" "a connection-rate run ($(cat "$D/perf-$m.txt"))" "$D/perf-$m.data" >>"$NOTES"
        sleep 1
    done
fi

# Processes that should still be alive.
for m in $MODES; do
    p=${PROC[$m]:-}
    if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then
        echo "$m: the proxy process exited during the run; last lines of its log:" >>"$NOTES"
        tail -5 "$D/daemon-$m.log" "$D/$m.log" 2>/dev/null | sed 's/^/    /' >>"$NOTES"
    fi
done

{
    echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
    echo "portcullis $(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo '?') from $PCL_BIN"
    [ -n "$HAPROXY" ] && echo "$("$HAPROXY" -v | head -1 | cut -d' ' -f1-3)"
    echo "$EVENTS_DESC"
    echo "$ROUNDS rounds, ${SECS}s per run, $CONC connections in flight, $IDLE_N idle connections"
} >"$D/env"

python3 "$HERE/report.py" "$RES" "$D/env" "$NOTES" "$IDLE_N" $MODES >"$D/table.md" || die "report failed"
# only its own section of the file: run-http.sh's tables stay
python3 "$HERE/mdsection.py" "$OUT" tcp "$D/table.md" || die "cannot write $OUT"
cat "$D/table.md"
log "table written to $OUT"
