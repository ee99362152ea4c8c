#!/bin/bash
# bench/run-http.sh: HTTP through portcullis' inspected endpoints
# (protocol: rest) against no proxy and against HAProxy in HTTP mode, side by
# side in one invocation; and WebSocket bulk after the upgrade against the
# same daemon's L4 raw relay.  Needs root.  See bench/README.md for the method.
#
#   sudo PCL_BIN=/path/to/build bench/run-http.sh
#
# PCL_BIN        build directory holding bin/portcullis and bin/portcullisd
#                (default ../build next to this script); nothing is built here
#                except the traffic generator bench/tcpbench.c (cc -O2, temp dir)
# BENCH_ROUNDS   repetitions of every measurement, median reported (default 3)
# BENCH_SECS     seconds per run (default 5)
# BENCH_CONC     connections in flight for new connections/s (default 8)
# BENCH_WRK_CONNS, BENCH_WRK_THREADS   wrk's -c and -t (default 32, 2)
# BENCH_MODES    subset/order of: noproxy pcl pcl-noident pcl-file haproxy-http
#                haproxy-http-log (pcl-file: events to a file, --no-journal)
# BENCH_LOADS    fixed offered loads for the latency comparison, as fractions of
#                the lower of portcullis' and HAProxy's keep-alive req/s
#                (default "0.5 0.8"; "" skips it)
# BENCH_BASE_RPS the rate those fractions are of, instead (to compare runs)
# BENCH_PERF     1: after the rounds, one more keep-alive run of pcl and of
#                haproxy-http under `perf record`; top symbols in the notes
# BENCH_EVENTS   auto | journal | stderr: where portcullisd writes its events
# BENCH_OUT      the Markdown file whose "http" section gets the tables
#                (default bench/results.md; other sections are kept)
# BENCH_KEEP     keep the temp dir (logs, wrk outputs, raw results)
#
# Traffic goes only to addresses this script assigns inside namespaces it
# creates (a free /24 block of 198.19.0.0/16, inside the blackholed
# 198.18.0.0/15).  Everything it creates is removed on exit, also on failure
# or Ctrl-C (bench/lib.sh).

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
CONC=${BENCH_CONC:-8}
WRK_CONNS=${BENCH_WRK_CONNS:-32}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
MODES=${BENCH_MODES:-"noproxy pcl pcl-file haproxy-http haproxy-http-log"}
EVENTS=${BENCH_EVENTS:-auto}
OUT=${BENCH_OUT:-$HERE/results.md}
LOADS=${BENCH_LOADS-"0.5 0.8"}

ID=$$
PORT_BULK=5201 # +1 crr, +2 echo, +3 http: see tcpbench.c
PORT_CRR=$((PORT_BULK + 1))
PORT_HTTP=$((PORT_BULK + 3))
HAPROXY_PORT=15003
CLIENT_SLACK=45 # seconds on top of a run before `timeout` kills a client
UP_NAME=up.bench.test # the inspected endpoint's host; the daemon's /etc/hosts maps it to UP

bench_init
pcl_bins "${PCL_BIN:-$HERE/../build}"
need_pkg cc gcc
need_pkg python3 python3-minimal
need_pkg iptables iptables
need_pkg timeout coreutils
need_pkg unshare util-linux
need_pkg wrk wrk
case " $MODES " in *" haproxy"*) need_pkg haproxy haproxy ;; esac
[ "${BENCH_PERF:-}" = 1 ] && need_pkg perf linux-perf
HAPROXY=$(command -v haproxy || true)
for m in $MODES; do
    case $m in noproxy | pcl | pcl-noident | pcl-file | haproxy-http | haproxy-http-log) ;; *) die "unknown mode '$m'" ;; esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null
T0=$(date +%s)
make_tmp "$HERE"

# B: upstream link, B+1: no-proxy client, B+2: HAProxy client, B+3: HAProxy
# with a journal line per request.  Blocks from 150 up: run.sh takes its
# blocks from 200 up, so the two never race for the same one.
pick_block 150 195 4
add_blackhole
upstream_ns "h$ID"
start_server "$PORT_BULK"

cat >"$D/hosts" <<HOSTS
127.0.0.1 localhost
::1 localhost
$UP $UP_NAME
HOSTS
chmod 644 "$D/hosts"

setup_noproxy() {
    local ns=pclh-np-$ID hif=phn$ID
    hif=${hif:0:15}
    client_link "$ns" "$hif" 1
    route_link "$hif" 1
    CLIENT_NS[noproxy]=$ns
    log "noproxy: global ip_forward=$(sysctl -n net.ipv4.ip_forward) (unchanged), forwarding on $hif and $UP_IF"
}

# One daemon and one sandbox per variant; the policy has the inspected
# endpoint (host name, the http port) and an address-only L4 endpoint (the
# bulk and crr ports) for the raw relay figure.
NEXT_DPORT=15151
setup_pcl() { # MODE DAEMON-FLAGS...
    local mode=$1 sd port
    shift
    sd=/run/pcl-benchhttp-$ID-$mode
    port=$(free_port "$NEXT_DPORT")
    NEXT_DPORT=$((port + 1))
    start_pcld "$mode" "$sd" "$port" "$D/hosts" "$@"
    cat >"$D/policy.yaml" <<YAML
version: 1
network_policies:
  bench:
    endpoints:
      - host: $UP_NAME
        port: $PORT_HTTP
        allowed_ips: ["$UP/32"]
        protocol: rest
        access: read-only
      - allowed_ips: ["$UP/32"]
        ports: [$PORT_BULK, $PORT_CRR]
YAML
    create_sandbox "$mode" "$sd" "benchh-$ID${mode#pcl}" "$D/policy.yaml"
    log "$mode: portcullisd pid ${PROC[$mode]} on port $port ($*), sandbox ${SB_NAME[$mode]}"
}

# HAProxy in HTTP mode, on its own client link whose TCP is REDIRECTed to it;
# `server s 0.0.0.0:0` connects to the original destination.  http-reuse
# never: one server connection per client connection, as a transparent
# relay (portcullis) has; no pooling of server connections across clients.
setup_haproxy_http() { # MODE IDX LOG(0|1)
    local mode=$1 idx=$2 withlog=$3 ns hif cfg glog= dlog=
    ns=pclh-h$idx-$ID
    hif=phh$idx$ID
    hif=${hif:0:15}
    client_link "$ns" "$hif" "$idx"
    redirect_link "$hif" "$HAPROXY_PORT"
    if [ "$withlog" = 1 ]; then
        glog="    log /run/systemd/journal/dev-log local0 info"
        dlog="    log global
    option httplog"
    fi
    cfg=$D/$mode.cfg
    cat >"$cfg" <<CFG
global
    nbthread 1
    maxconn 3000
$glog

defaults
    mode http
    timeout connect 10s
    timeout client 120s
    timeout server 120s
    timeout http-request 10s
    timeout tunnel 120s
    http-reuse never
$dlog

frontend fe
    bind $(net_of "$idx").1:$HAPROXY_PORT
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
    log "$mode: haproxy pid ${PROC[$mode]} on $(net_of "$idx").1:$HAPROXY_PORT (mode http, http-reuse never)"
}

# ready MODE: one HTTP exchange through MODE reaches the upstream server (and,
# for portcullis, one exchange through its L4 endpoint).
ready() {
    local mode=$1 before after
    before=$(server_stat http_reqs)
    for _ in $(seq 40); do
        if tclient 15 "$mode" "$TB" hping "$UP" "$PORT_HTTP" "$UP_NAME" >/dev/null 2>>"$D/ready.log"; then
            after=$(server_stat http_reqs)
            [ "$after" -gt "$before" ] || die "$mode: the request did not reach the upstream server"
            case $mode in
            pcl*)
                before=$(server_stat crr_conns)
                tclient 15 "$mode" "$TB" ping "$UP" "$PORT_CRR" >/dev/null 2>>"$D/ready.log" ||
                    die "$mode: no exchange through the L4 endpoint: $(tail -2 "$D/ready.log")"
                [ "$(server_stat crr_conns)" -gt "$before" ] || die "$mode: the L4 exchange did not reach the upstream server"
                ;;
            esac
            log "$mode: ready (the upstream server saw the request)"
            return 0
        fi
        sleep 0.25
    done
    die "$mode: no request reached the upstream server: $(tail -3 "$D/ready.log")"
}

setup_events
for m in $MODES; do
    case $m in
    noproxy) setup_noproxy ;;
    pcl) setup_pcl pcl ;;
    pcl-noident) setup_pcl pcl-noident --no-ident ;;
    pcl-file) setup_pcl pcl-file --no-journal ;;
    haproxy-http) setup_haproxy_http haproxy-http 2 0 ;;
    # One journal line per request (option httplog), as portcullis writes
    # one event per request on an inspected endpoint.
    haproxy-http-log) setup_haproxy_http haproxy-http-log 3 1 ;;
    esac
done
for m in $MODES; do ready "$m"; done

RES=$D/results.tsv # mode metric round value
: >"$RES"
WRK_ARGS=(-t"$WRK_THREADS" -c"$WRK_CONNS" --timeout 5s --latency -H "Host: $UP_NAME" "http://$UP:$PORT_HTTP/")

record() { # MODE METRIC ROUND VALUE
    echo -e "$1\t$2\t$3\t$4" >>"$RES"
}

# run_one MODE METRIC ROUND: one run of ka (wrk, keep-alive), hcrr (a
# request per connection), ws (bulk after the 101) or raw (bulk through the
# L4 endpoint).
declare -A SEEN # pcl*: requests the server saw through it during the rounds
run_one() {
    local mode=$1 metric=$2 round=$3 out rc v t=$((SECS + CLIENT_SLACK)) before=
    case $mode:$metric in pcl*:ka | pcl*:hcrr | pcl*:ws) before=$(server_stat http_reqs) ;; esac
    run_metric "$@"
    [ -n "$before" ] && SEEN[$mode]=$((${SEEN[$mode]:-0} + $(server_stat http_reqs) - before))
    sleep 1
}
run_metric() {
    local mode=$1 metric=$2 round=$3 out rc v t=$((SECS + CLIENT_SLACK))
    case $metric in
    ka)
        measure_ka "$mode" "$round" "$D/wrk-$mode-$round.txt" tclient "$t" "$mode" wrk -d"${SECS}s" "${WRK_ARGS[@]}"
        return
        ;;
    hcrr) out=$(tclient "$t" "$mode" "$TB" hcrr "$UP" "$PORT_HTTP" "$SECS" "$CONC" "$UP_NAME" 2>>"$D/runs.log") ;;
    ws) out=$(tclient "$t" "$mode" "$TB" wsbulk "$UP" "$PORT_HTTP" "$SECS" "$UP_NAME" 2>>"$D/runs.log") ;;
    raw) out=$(tclient "$t" "$mode" "$TB" bulk "$UP" "$PORT_BULK" "$SECS" 2>>"$D/runs.log") ;;
    esac
    rc=$?
    v=${out%% *}
    if [ $rc -ne 0 ] || [ -z "$v" ]; then
        v=fail
        log "  $mode $metric round $round: FAILED (rc $rc): $(tail -1 "$D/runs.log")"
    else
        log "  $mode $metric round $round: $out"
    fi
    record "$mode" "$metric" "$round" "$v"
}

metrics_of() { # MODE: what runs for it, in order (raw right after ws)
    case $1 in
    pcl-file) echo "ka hcrr" ;; # the journal's share; the relay is pcl's
    pcl*) echo "ka hcrr ws raw" ;;
    *) echo "ka hcrr ws" ;;
    esac
}

log "warm-up"
for m in $MODES; do
    {
        tclient 30 "$m" wrk -d1s "${WRK_ARGS[@]}" >/dev/null &&
            tclient 30 "$m" "$TB" hcrr "$UP" "$PORT_HTTP" 1 "$CONC" "$UP_NAME" &&
            tclient 30 "$m" "$TB" wsbulk "$UP" "$PORT_HTTP" 1 "$UP_NAME"
    } >/dev/null 2>>"$D/runs.log" || log "  $m: warm-up failed: $(tail -1 "$D/runs.log")"
done

# Interleaved rounds, the starting mode rotating, so that drift of a noisy
# machine spreads over every mode instead of landing on one.
sleep 1
T_ROUNDS=$(date +%s)
read -r -a MODE_LIST <<<"$MODES"
N_MODES=${#MODE_LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < N_MODES; i++)); do
        m=${MODE_LIST[$(((i + r - 1) % N_MODES))]}
        for k in $(metrics_of "$m"); do run_one "$m" "$k" "$r"; done
    done
done

# Latency at the same offered load: wrk's closed loop runs every mode at its
# own saturation, so its percentiles compare different loads.  Here every
# mode gets the same fixed request rate (open loop, tcpbench hrate), as
# fractions of the lower keep-alive rate of portcullis and HAProxy.
BASE_RPS=${BENCH_BASE_RPS:-$(python3 "$HERE/report_http.py" base "$RES" pcl haproxy-http 2>>"$D/runs.log")}
if [ -n "$LOADS" ] && [ -n "$BASE_RPS" ]; then
    echo -e "-\tbase_rps\t0\t$BASE_RPS" >>"$RES"
    for load in $LOADS; do
        rate=$(awk -v b="$BASE_RPS" -v l="$load" 'BEGIN {printf "%d", b * l}')
        log "fixed load $load x $BASE_RPS = $rate req/s"
        for ((r = 1; r <= ROUNDS; r++)); do
            for ((i = 0; i < N_MODES; i++)); do
                m=${MODE_LIST[$(((i + r - 1) % N_MODES))]}
                before=$(server_stat http_reqs)
                out=$(tclient $((SECS + CLIENT_SLACK)) "$m" "$TB" hrate "$UP" "$PORT_HTTP" "$SECS" \
                    "$WRK_CONNS" "$rate" "$UP_NAME" 2>>"$D/runs.log")
                if [ $? -ne 0 ] || [ -z "$out" ]; then
                    log "  $m load $load round $r: FAILED: $(tail -1 "$D/runs.log")"
                    for k in rps p50 p99 p999; do record "$m" "load${load}_$k" "$r" fail; done
                else
                    log "  $m load $load round $r: $out"
                    read -r v50 v99 v999 <<<"$(cut -d' ' -f2-4 <<<"$out")"
                    record "$m" "load${load}_rps" "$r" "${out%% *}"
                    record "$m" "load${load}_p50" "$r" "$v50"
                    record "$m" "load${load}_p99" "$r" "$v99"
                    record "$m" "load${load}_p999" "$r" "$v999"
                fi
                case $m in pcl*) SEEN[$m]=$((${SEEN[$m]:-0} + $(server_stat http_reqs) - before)) ;; esac
                sleep 1
            done
        done
    done
fi

NOTES=$D/notes
: >"$NOTES"

# BENCH_PERF=1: where the proxies spend their CPU while serving keep-alive
# requests (one more run of each, not counted in the tables).
if [ "${BENCH_PERF:-}" = 1 ]; then
    for m in pcl haproxy-http; do
        case " $MODES " in *" $m "*) ;; *) continue ;; esac
        client_bg "$((SECS + CLIENT_SLACK))" "$m" wrk -d"${SECS}s" "${WRK_ARGS[@]}" >"$D/perf-$m.txt" 2>&1
        wp=$CLIENT_PID
        perf_sample "${PROC[$m]}" "$D/perf-$m.data" "$SECS"
        wait "$wp"
        forget_pid "$wp"
        perf_note "$m" "a keep-alive run (wrk: $(grep -a 'Requests/sec' "$D/perf-$m.txt" | tr -s ' '))" \
            "$D/perf-$m.data" >>"$NOTES"
        sleep 1
    done
fi
for m in $MODES; do
    p=${PROC[$m]:-}
    if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then
        echo "$m: the proxy process exited during the run; last lines of its log:" >>"$NOTES"
        tail -5 "$D/daemon-$m.log" "$D/$m.log" 2>/dev/null | sed 's/^/    /' >>"$NOTES"
    fi
done
if [ "$EVENTS" = journal ]; then
    # journald drops what exceeds its own rate limit; say so if it did.
    sup=$(journalctl -q -o cat --since "@$T0" _COMM=systemd-journal 2>/dev/null |
        awk '/^Suppressed [0-9]+ messages/ {n += $2} END {print n + 0}')
    [ "$sup" -gt 0 ] && echo "journald suppressed $sup messages (its rate limit) during the run" >>"$NOTES"
    # Every request on an inspected endpoint is one HTTP:<METHOD> event: do
    # the journal's entries match the requests the server saw?
    sleep 2
    for m in $MODES; do
        case $m in pcl-file) continue ;; pcl*) ;; *) continue ;; esac
        n=$(journalctl -q -o cat --since "@$T_ROUNDS" "_PID=${PROC[$m]}" PORTCULLIS_EVENT=HTTP:GET 2>/dev/null | wc -l)
        echo "$m: the server saw ${SEEN[$m]:-0} requests through it during the runs; the journal holds $n HTTP:GET events of its daemon from then on" >>"$NOTES"
    done
fi

{
    echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
    echo "portcullis $(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo '?') from $PCL_BIN"
    [ -n "$HAPROXY" ] && echo "$("$HAPROXY" -v | head -1 | cut -d' ' -f1-3)"
    echo "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "$EVENTS_DESC"
    echo "$ROUNDS rounds, ${SECS}s per run; wrk -t$WRK_THREADS -c$WRK_CONNS; $CONC connections in flight for new connections/s"
} >"$D/env"

python3 "$HERE/report_http.py" report "$RES" "$D/env" "$NOTES" "$LOADS" $MODES >"$D/table.md" || die "report failed"
python3 "$HERE/mdsection.py" "$OUT" http "$D/table.md" || die "cannot write $OUT"
cat "$D/table.md"
log "tables written to the http section of $OUT"
