#!/bin/bash
# bench/run-tls.sh: TLS through portcullis' termination (protocol: rest on a
# TLS port: the daemon verifies the upstream, answers the client with a leaf
# of its own CA, inspects the decrypted HTTP) against no proxy (TLS end to
# end) and against HAProxy terminating TLS (mode http, ssl on both sides),
# side by side in one invocation.  Needs root.  See bench/README.md (TLS).
#
#   sudo PCL_BIN=/path/to/build bench/run-tls.sh
#
# PCL_BIN        build directory holding bin/portcullis and bin/portcullisd
#                (default ../build next to this script); nothing is built here
# BENCH_ROUNDS   repetitions of every measurement, median reported (default 3)
# BENCH_SECS     seconds per run (default 5)
# BENCH_HS_CONNS connections in flight for new handshakes/s (default 16)
# BENCH_HS_VERIFY 1: the handshake client verifies the server's certificate
#                and name (default), 0: it does not (as wrk; less client CPU)
# BENCH_WRK_CONNS, BENCH_WRK_THREADS   wrk's -c and -t for keep-alive (32, 2)
# BENCH_MODES    subset/order of:
#                noproxy pcl haproxy-tls haproxy-tls-noreuse haproxy-tls-log
# BENCH_EVENTS   auto | journal | stderr: where portcullisd writes its events
# BENCH_PERF     1: after the rounds, one more handshake run and keep-alive
#                run of pcl and of haproxy-tls under `perf record`; top
#                symbols in the notes
# BENCH_OUT      the Markdown file whose "tls" section gets the tables
#                (default bench/results.md; other sections are kept)
# BENCH_KEEP     keep the temp dir (logs, wrk outputs, raw results)
#
# Traffic goes only to addresses this script assigns inside namespaces it
# creates (a free block of 198.19.0.0/16, inside the blackholed
# 198.18.0.0/15).  Everything it creates is removed on exit, also on failure
# or Ctrl-C (bench/lib.sh).

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
HS_CONNS=${BENCH_HS_CONNS:-16}
HS_VERIFY=${BENCH_HS_VERIFY:-1}
WRK_CONNS=${BENCH_WRK_CONNS:-32}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
MODES=${BENCH_MODES:-"noproxy pcl haproxy-tls haproxy-tls-noreuse haproxy-tls-log"}
EVENTS=${BENCH_EVENTS:-auto}
OUT=${BENCH_OUT:-$HERE/results.md}

ID=$$
PORT_TLS=8443 # nginx in the upstream namespace
HAPROXY_PORT=15004
CLIENT_SLACK=45 # seconds on top of a run before `timeout` kills a client
UP_NAME=up.bench.test

bench_init
pcl_bins "${PCL_BIN:-$HERE/../build}"
need_pkg python3 python3-minimal
need_pkg iptables iptables
need_pkg timeout coreutils
need_pkg unshare util-linux
need_pkg openssl openssl
need_pkg curl curl
need_pkg wrk wrk
need_pkg nginx nginx
case " $MODES " in *" haproxy"*) need_pkg haproxy haproxy ;; esac
[ "${BENCH_PERF:-}" = 1 ] && need_pkg perf linux-perf
HAPROXY=$(command -v haproxy || true)
NGINX=$(command -v nginx)
for m in $MODES; do
    case $m in noproxy | pcl | haproxy-tls | haproxy-tls-noreuse | haproxy-tls-log) ;; *) die "unknown mode '$m'" ;; esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null
T0=$(date +%s)
# What the daemon runs: the build as it is now (it may be rebuilt while we run).
PCL_DESC=$(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo '?')
PCLD_MTIME=$(stat -c %Y "$PCLD")
D=$(mktemp -d /tmp/pcl-benchtls.XXXXXX) || die "mktemp"
chmod 755 "$D" # the sandboxed client runs as an unprivileged user
# tcpbench with its TLS mode (tlscrr: a full handshake per connection; wrk
# cannot do that, it resumes its sessions on reconnect).
TB=$D/tcpbench
tb_cc() { cc -O2 -Wall -DTCPBENCH_TLS -o "$TB" "$HERE/tcpbench.c" -lssl -lcrypto 2>"$D/cc.log"; }
if ! tb_cc; then
    log "installing libssl-dev (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev >/dev/null || die "cannot install libssl-dev"
    tb_cc || die "cannot compile tcpbench.c with TLS: $(cat "$D/cc.log")"
fi
chmod 755 "$TB"

# B: upstream link, B+1: no-proxy client, B+2..B+4: the HAProxy clients.
# Blocks from 100 up: run-http.sh searches 150-198 and run.sh 200-249, so no
# two benchmarks race for the same block.
pick_block 100 145 5
add_blackhole
upstream_ns "t$ID"

# ---- certificates (EC P-256 everywhere, as portcullis' own leaves) ----------
# bench-ca: signs nginx's leaf (trusted by portcullisd through --upstream-ca,
# by HAProxy through ca-file, by curl in the no-proxy mode) and HAProxy's
# client-facing leaf.  portcullisd makes its own interception CA in
# $PORTCULLIS_CA_DIR (private to this run), which its sandbox trusts.
export PORTCULLIS_CA_DIR=$D/pclca
mkcerts() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$D/bench-ca.key" -out "$D/bench-ca.pem" -days 2 -subj "/O=portcullis bench/CN=portcullis bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" >/dev/null 2>&1 || return 1
    local base
    for base in up hp; do
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$D/$base.key" -out "$D/$base.csr" -subj "/CN=$UP_NAME" >/dev/null 2>&1 || return 1
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$UP_NAME" "subjectKeyIdentifier=hash" \
            "authorityKeyIdentifier=keyid:always" >"$D/$base.ext"
        openssl x509 -req -in "$D/$base.csr" -CA "$D/bench-ca.pem" -CAkey "$D/bench-ca.key" \
            -set_serial "0x$(openssl rand -hex 12)" -days 2 -sha256 -extfile "$D/$base.ext" \
            -out "$D/$base.pem" >/dev/null 2>&1 || return 1
        openssl verify -CAfile "$D/bench-ca.pem" "$D/$base.pem" >/dev/null 2>&1 || return 1
    done
    cat "$D/hp.pem" "$D/hp.key" >"$D/hp-crt.pem" # HAProxy's crt: leaf and key
    chmod 600 "$D"/*.key "$D/hp-crt.pem"
    chmod 644 "$D/bench-ca.pem" "$D/up.pem" "$D/hp.pem"
}
mkcerts || die "openssl: cannot make the benchmark's certificates"

cat >"$D/hosts" <<HOSTS
127.0.0.1 localhost
::1 localhost
$UP $UP_NAME
HOSTS
chmod 644 "$D/hosts"

# ---- the upstream: nginx, one process, TLS on PORT_TLS ----------------------
# GET / answers a 13-byte text/plain body (as tcpbench's HTTP server);
# GET /big is a sparse 256 GiB file on a tmpfs of our own (tmpfs reads a
# hole from the zero page: no disk, no page cache filling up; from a disk
# file system the same reads cost nginx more than its TLS).  Every
# connection's first request is logged ($connection_requests = 1) with
# $ssl_session_reused: the upstream side's own count of connections and of
# resumed handshakes.
mkdir -p "$D/nginx" "$D/www"
mount -t tmpfs -o size=1m,mode=755 pcl-benchtls "$D/www" || die "cannot mount a tmpfs on $D/www"
UNDO+=("umount $D/www || umount -l $D/www")
truncate -s 256G "$D/www/big" || die "cannot make the sparse file"
NGINX_LOG=$D/nginx-conns.log
: >"$NGINX_LOG"
cat >"$D/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
pid $D/nginx.pid;
error_log $D/nginx-error.log warn;
events {
    worker_connections 8192;
    multi_accept on;
}
http {
    default_type text/plain;
    client_body_temp_path $D/nginx/body;
    proxy_temp_path $D/nginx/proxy;
    fastcgi_temp_path $D/nginx/fastcgi;
    uwsgi_temp_path $D/nginx/uwsgi;
    scgi_temp_path $D/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile off;
    output_buffers 4 128k;
    log_format conns '\$ssl_session_reused \$ssl_protocol \$ssl_cipher \$remote_addr \$status';
    map \$connection_requests \$first_request { 1 1; default 0; }
    server {
        listen $UP:$PORT_TLS ssl backlog=4096;
        server_name $UP_NAME;
        ssl_certificate $D/up.pem;
        ssl_certificate_key $D/up.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log $NGINX_LOG conns if=\$first_request;
        location = / { return 200 "hello, world\n"; }
        location = /big { root $D/www; }
    }
}
NGINX
ip netns exec "$UP_NS" "$NGINX" -e "$D/nginx-error.log" -p "$D/nginx" -c "$D/nginx.conf" -t \
    >"$D/nginx.out" 2>&1 || die "nginx config: $(cat "$D/nginx.out")"
ip netns exec "$UP_NS" "$NGINX" -e "$D/nginx-error.log" -p "$D/nginx" -c "$D/nginx.conf" >>"$D/nginx.out" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 100); do
    ip netns exec "$UP_NS" ss -Hltn "sport = :$PORT_TLS" | grep -q . && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
done
ip netns exec "$UP_NS" ss -Hltn "sport = :$PORT_TLS" | grep -q . || die "nginx did not start: $(tail -3 "$D/nginx-error.log" "$D/nginx.out")"

# Clients resolve up.bench.test through a hosts file.  A client namespace
# sees it as /etc/netns/NS/hosts (ip netns exec bind-mounts it over
# /etc/hosts; removed at exit).  The sandboxed client: `portcullis exec`
# copies its caller's mount namespace, so it runs inside an unshare -m whose
# /etc/hosts is the file (prefix below; the sandbox has no resolver of its
# own for a name only this script knows).
prefix() { # MODE: PFX, the command prefix that runs a client as MODE's client
    case $1 in
    pcl*) PFX=(unshare -m --propagation slave sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$D/hosts"
        env "PORTCULLIS_STATE_DIR=${SB_DIR[$1]}" "$PCL" exec "${SB_NAME[$1]}" --) ;;
    *) PFX=(ip netns exec "${CLIENT_NS[$1]}") ;;
    esac
}
netns_hosts() {
    mkdir -p "/etc/netns/$1" && UNDO+=("rm -rf /etc/netns/$1")
    cp "$D/hosts" "/etc/netns/$1/hosts"
}

setup_noproxy() {
    local ns=pclt-np-$ID hif=ptn$ID
    hif=${hif:0:15}
    client_link "$ns" "$hif" 1
    route_link "$hif" 1
    netns_hosts "$ns"
    CLIENT_NS[noproxy]=$ns
    CURL_CA[noproxy]=$D/bench-ca.pem
    log "noproxy: global ip_forward=$(sysctl -n net.ipv4.ip_forward) (unchanged), forwarding on $hif and $UP_IF"
}

# portcullis: one daemon (trusting bench-ca upstream through --upstream-ca,
# resolving up.bench.test through its own /etc/hosts, so that the flow's SNI
# matches the policy host at its address) and one sandbox whose policy
# terminates and inspects the TLS port.  Default daemon settings otherwise.
setup_pcl() {
    local mode=pcl sd port
    sd=/run/pcl-benchtls-$ID
    port=$(free_port 15171)
    start_pcld "$mode" "$sd" "$port" "$D/hosts" --upstream-ca "$D/bench-ca.pem"
    cat >"$D/policy.yaml" <<YAML
version: 1
network_policies:
  bench:
    endpoints:
      - host: $UP_NAME
        port: $PORT_TLS
        allowed_ips: ["$UP/32"]
        protocol: rest
        access: full
YAML
    create_sandbox "$mode" "$sd" "bencht-$ID" "$D/policy.yaml"
    CURL_CA[pcl]= # the sandbox's trust store (SSL_CERT_FILE, CURL_CA_BUNDLE)
    log "$mode: portcullisd pid ${PROC[$mode]} on port $port, sandbox ${SB_NAME[$mode]}"
}

# HAProxy terminating TLS in HTTP mode: its own client link whose TCP is
# REDIRECTed to it; `bind ... ssl crt` with an EC P-256 leaf from bench-ca;
# `server s 0.0.0.0:0 ssl verify required` to the original destination, with
# the client's SNI (verified against the server's certificate).  http-reuse
# never, as in run-http.sh.  noreuse: `no-ssl-reuse` (every server-side
# handshake a full one; by default HAProxy offers its last server session to
# every new server connection); log: httpslog to the
# journal (one line per request, as portcullis' event per request).
setup_haproxy_tls() { # MODE IDX
    local mode=$1 idx=$2 ns hif cfg glog='' dlog='' sopt=
    ns=pclt-h$idx-$ID
    hif=pth$idx$ID
    hif=${hif:0:15}
    client_link "$ns" "$hif" "$idx"
    redirect_link "$hif" "$HAPROXY_PORT"
    netns_hosts "$ns"
    case $mode in
    haproxy-tls-log)
        glog="    log /run/systemd/journal/dev-log local0 info"
        dlog="    log global
    option httpslog"
        ;;
    haproxy-tls-noreuse) sopt=" no-ssl-reuse" ;;
    esac
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
    http-reuse never
$dlog

frontend fe
    bind $(net_of "$idx").1:$HAPROXY_PORT ssl crt $D/hp-crt.pem alpn http/1.1
    default_backend be

backend be
    # the original destination of the REDIRECTed connection
    server s 0.0.0.0:0 ssl verify required ca-file $D/bench-ca.pem sni ssl_fc_sni$sopt
CFG
    "$HAPROXY" -c -q -f "$cfg" >"$D/$mode.log" 2>&1 || die "$mode: config: $(cat "$D/$mode.log")"
    "$HAPROXY" -db -f "$cfg" >>"$D/$mode.log" 2>&1 &
    PROC[$mode]=$!
    PIDS+=("$!")
    CLIENT_NS[$mode]=$ns
    CURL_CA[$mode]=$D/bench-ca.pem
    log "$mode: haproxy pid ${PROC[$mode]} on $(net_of "$idx").1:$HAPROXY_PORT"
}

# ---- counters ----------------------------------------------------------------
# Client connections: a rule without a target in nat PREROUTING, which sees
# the first packet of every connection once (a retransmitted SYN is not
# counted again), for every client link and the sandbox's: the connections
# every mode's clients opened to nginx's address and port.  Its conntrack
# match also turns conntrack on in the host namespace (without it, routed
# connections never traverse the nat table when no other rule there needs
# conntrack; REDIRECT, of the proxies, does).  Added after the sandbox, at
# the top, so that the sandbox's REDIRECT cannot end the traversal before it.
CONN_RULE=(PREROUTING -p tcp -d "$UP" --dport "$PORT_TLS" -m conntrack --ctstate NEW
    -m comment --comment "pcl-benchtls-$ID")
add_conn_counter() {
    iptables -w -t nat -I "${CONN_RULE[@]}" || die "cannot add the connection counter"
    UNDO+=("iptables -w -t nat -D ${CONN_RULE[*]}")
}
client_conns() {
    iptables -w -t nat -nvxL PREROUTING | awk -v c="pcl-benchtls-$ID" 'index($0, "/* " c " */") {print $1; exit}'
}
up_lines() { wc -l <"$NGINX_LOG"; }
declare -A CONNS  # client connections through a mode over the whole run
declare -A PROBES # of them, wrk's: before a run it connects once and closes, no TLS

# in_mode MODE CMD...: run CMD, adding the client connections it opened to
# CONNS[MODE].
in_mode() {
    local mode=$1 b a rc
    shift
    b=$(client_conns)
    "$@"
    rc=$?
    a=$(client_conns)
    CONNS[$mode]=$((${CONNS[$mode]:-0} + a - b))
    return $rc
}

URL=https://$UP_NAME:$PORT_TLS
declare -A CURL_CA # the CA curl verifies MODE's server certificate with (pcl: none, its trust store)
# curl_get MODE SECONDS PATH [CURL-ARGS...]: curl as MODE's client.
curl_get() {
    local mode=$1 t=$2 path=$3 ca=()
    shift 3
    [ -n "${CURL_CA[$mode]}" ] && ca=(--cacert "${CURL_CA[$mode]}")
    client "$((t + CLIENT_SLACK))" "$mode" curl -sS --noproxy '*' "${ca[@]}" "$@" "$URL$path"
}

# ready MODE: one HTTPS exchange through MODE, with a verified certificate,
# reaches nginx, and the connection counter saw it.
ready() {
    local mode=$1 b c c2 out ok i
    for i in $(seq 12); do
        b=$(up_lines)
        c=$(client_conns)
        ok=
        curl_get "$mode" 5 / -m 5 >"$D/out" 2>>"$D/ready.log" && [ "$(cat "$D/out")" = "hello, world" ] && ok=1
        c2=$(client_conns)
        CONNS[$mode]=$((${CONNS[$mode]:-0} + c2 - c))
        if [ -n "$ok" ]; then
            sleep 0.2
            [ "$(up_lines)" -gt "$b" ] || die "$mode: the request did not reach nginx"
            [ "$c2" -gt "$c" ] || die "$mode: the connection counter did not see the client's connection"
            log "$mode: ready (nginx answered through it)"
            [ "$i" -gt 1 ] && echo "$mode: the readiness check needed $i attempts (the failed ones are in the connection count)" >>"$NOTES"
            return 0
        fi
        sleep 0.25
    done
    die "$mode: no request reached nginx: $(tail -3 "$D/ready.log")"
}

NOTES=$D/notes
: >"$NOTES"
setup_events
for m in $MODES; do
    case $m in
    noproxy) setup_noproxy ;;
    pcl) setup_pcl ;;
    haproxy-tls) setup_haproxy_tls haproxy-tls 2 ;;
    haproxy-tls-noreuse) setup_haproxy_tls haproxy-tls-noreuse 3 ;;
    haproxy-tls-log) setup_haproxy_tls haproxy-tls-log 4 ;;
    esac
done
add_conn_counter
for m in $MODES; do ready "$m"; done

RES=$D/results.tsv # mode metric round value
: >"$RES"
record() { # MODE METRIC ROUND VALUE
    echo -e "$1\t$2\t$3\t$4" >>"$RES"
}
KA_ARGS=(-t"$WRK_THREADS" -c"$WRK_CONNS" --timeout 5s --latency "$URL/")
wrk_ka() { # MODE SECONDS: keep-alive wrk as MODE's client
    PROBES[$1]=$((${PROBES[$1]:-0} + 1))
    client "$(($2 + CLIENT_SLACK))" "$1" wrk -d"${2}s" "${KA_ARGS[@]}"
}
# tlscrr MODE SECONDS [bg]: new TLS connections (full handshakes) as MODE's
# client (bg: client_bg).
tlscrr() {
    local cafile=${CURL_CA[$1]:--} # pcl: "-", OpenSSL's default paths = the sandbox's SSL_CERT_FILE
    [ "$HS_VERIFY" = 1 ] || cafile=none
    "client${3:+_bg}" "$(($2 + CLIENT_SLACK))" "$1" "$TB" tlscrr "$UP" "$PORT_TLS" "$2" "$HS_CONNS" "$UP_NAME" "$cafile"
}

# run_one MODE METRIC ROUND: hs (a new TLS connection per request), ka
# (keep-alive requests) or bulk (one download).
run_one() {
    local mode=$1 metric=$2 round=$3 out v rc t=$((SECS + CLIENT_SLACK)) cb ub ca ua
    local rps ndone errs resumed p50 p99 code bytes secs
    cb=$(client_conns)
    ub=$(up_lines)
    case $metric in
    hs)
        tlscrr "$mode" "$SECS" >"$D/out" 2>>"$D/runs.log"
        rc=$?
        out=$(cat "$D/out")
        read -r rps ndone errs resumed p50 p99 <<<"$out"
        if [ $rc -eq 0 ] && [ -n "${p99:-}" ]; then
            record "$mode" hs_rps "$round" "$rps"
            record "$mode" hs_p50 "$round" "$p50"
            record "$mode" hs_p99 "$round" "$p99"
            record "$mode" hs_done "$round" "$ndone"
            record "$mode" hs_errors "$round" "$errs"
            record "$mode" hs_resumed "$round" "$resumed"
            log "  $mode hs round $round: $out"
        else
            for k in rps p50 p99 "done" errors resumed; do record "$mode" "hs_$k" "$round" fail; done
            log "  $mode hs round $round: FAILED (rc $rc, '$out'): $(tail -1 "$D/runs.log")"
        fi
        ;;
    ka)
        measure_ka "$mode" "$round" "$D/wrk-$mode-$metric-$round.txt" wrk_ka "$mode" "$SECS"
        ;;
    bulk)
        # One download of the sparse file, stopped by curl after SECS: bytes
        # received / curl's total time (the handshake included, ~1 ms).  The
        # CPU the whole machine and the proxy used meanwhile, per GB.
        local mb pb ma pa busy cms pus pss
        mb=$(machine_ticks)
        pb=$(cpu_ticks_split "${PROC[$mode]:-}")
        curl_get "$mode" "$SECS" /big -o /dev/null -m "$SECS" -w '%{http_code} %{size_download} %{time_total}' \
            >"$D/out" 2>>"$D/runs.log"
        rc=$? # 28: stopped by -m, as intended
        ma=$(machine_ticks)
        pa=$(cpu_ticks_split "${PROC[$mode]:-}")
        out=$(cat "$D/out")
        read -r code bytes secs <<<"$out"
        if { [ $rc -eq 0 ] || [ $rc -eq 28 ]; } && [ "${code:-}" = 200 ] && [ "${bytes:-0}" -gt 0 ]; then
            v=$(python3 -c 'import sys; print("%.3f" % (int(sys.argv[1]) * 8 / float(sys.argv[2]) / 1e9))' "$bytes" "$secs")
            log "  $mode bulk round $round: $v Gbit/s ($bytes bytes in $secs s)"
            read -r busy cms pus pss < <(bulk_cpu "$mb" "$ma" "$pb" "$pa" "$bytes")
            record "$mode" bulk_busy "$round" "$busy"
            record "$mode" bulk_cpu_machine "$round" "$cms"
            if [ "$pus" != - ]; then
                record "$mode" bulk_cpu_proxy_user "$round" "$pus"
                record "$mode" bulk_cpu_proxy_sys "$round" "$pss"
            fi
        else
            v=fail
            log "  $mode bulk round $round: FAILED (rc $rc, '$out'): $(tail -1 "$D/runs.log")"
        fi
        record "$mode" bulk "$round" "$v"
        ;;
    esac
    sleep 1 # nginx logs a connection when its first request ends
    ca=$(client_conns)
    ua=$(up_lines)
    CONNS[$mode]=$((${CONNS[$mode]:-0} + ca - cb))
    if [ "$metric" = hs ]; then
        record "$mode" hs_conns "$round" "$((ca - cb))"
        record "$mode" hs_up "$round" "$((ua - ub))"
        record "$mode" hs_up_resumed "$round" "$(sed -n "$((ub + 1)),${ua}p" "$NGINX_LOG" | grep -c '^r ')"
    fi
}

metrics_of() { # MODE: what runs for it, in order
    case $1 in
    haproxy-tls-noreuse) echo "hs" ;;       # only the server-side handshakes differ
    haproxy-tls-log) echo "hs ka" ;;        # one log line per request: no bulk difference
    *) echo "hs ka bulk" ;;
    esac
}

log "warm-up"
for m in $MODES; do
    {
        in_mode "$m" wrk_ka "$m" 1 >/dev/null &&
            in_mode "$m" tlscrr "$m" 1 >/dev/null &&
            { in_mode "$m" curl_get "$m" 1 /big -o /dev/null -m 1 || [ $? = 28 ]; }
    } 2>>"$D/runs.log" || log "  $m: warm-up failed: $(tail -1 "$D/runs.log")"
done

# Why not wrk -H 'Connection: close' for handshakes: wrk keeps the TLS
# session of a connection across its reconnects (SSL_clear), so its "new"
# connections resume.  Shown once, directly against nginx (not counted).
case " $MODES " in *" noproxy "*)
    ub=$(up_lines)
    client 30 noproxy wrk -d1s -t"$WRK_THREADS" -c"$HS_CONNS" -H "Connection: close" "$URL/" >"$D/wrk-close-check.txt" 2>&1
    sleep 1
    ua=$(up_lines)
    n=$((ua - ub))
    nr=$(sed -n "$((ub + 1)),${ua}p" "$NGINX_LOG" | grep -c '^r ')
    echo "wrk -H 'Connection: close' (1 s, -c$HS_CONNS) straight to nginx: $nr of its $n connections resumed a TLS session, so wrk does not measure full handshakes; tcpbench tlscrr does (never offers a session)" >>"$NOTES"
    log "wrk -H 'Connection: close': $nr of $n connections resumed"
    ;;
esac

# Interleaved rounds, the starting mode rotating, so that drift of a noisy
# machine spreads over every mode instead of landing on one.
sleep 1
read -r -a MODE_LIST <<<"$MODES"
N_MODES=${#MODE_LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS"
    for ((i = 0; i < N_MODES; i++)); do
        m=${MODE_LIST[$(((i + r - 1) % N_MODES))]}
        for k in $(metrics_of "$m"); do run_one "$m" "$k" "$r"; done
    done
done

# BENCH_PERF=1: where the proxies spend their CPU while handshaking and while
# serving keep-alive requests (one more run of each, not counted in the tables).
if [ "${BENCH_PERF:-}" = 1 ]; then
    for m in pcl haproxy-tls; do
        case " $MODES " in *" $m "*) ;; *) continue ;; esac
        for k in hs ka; do
            cb=$(client_conns)
            if [ "$k" = hs ]; then
                tlscrr "$m" "$SECS" bg >"$D/$k-$m-perf.txt" 2>&1
            else
                PROBES[$m]=$((${PROBES[$m]:-0} + 1))
                client_bg "$((SECS + CLIENT_SLACK))" "$m" wrk -d"${SECS}s" "${KA_ARGS[@]}" >"$D/$k-$m-perf.txt" 2>&1
            fi
            wp=$CLIENT_PID
            perf_sample "${PROC[$m]}" "$D/perf-$k-$m.data" "$SECS"
            wait "$wp"
            forget_pid "$wp"
            CONNS[$m]=$((${CONNS[$m]:-0} + $(client_conns) - cb))
            if [ "$k" = hs ]; then
                what="a handshake run (tlscrr: $(cat "$D/$k-$m-perf.txt"))"
            else
                what="a keep-alive run (wrk: $(grep -a 'Requests/sec' "$D/$k-$m-perf.txt" | tr -s ' '))"
            fi
            perf_note "$m" "$what" "$D/perf-$k-$m.data" >>"$NOTES"
            sleep 1
        done
    done
fi

for m in $MODES; do
    p=${PROC[$m]:-}
    if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then
        echo "$m: the proxy process exited during the run; last lines of its log:" >>"$NOTES"
        tail -5 "$D/daemon-$m.log" "$D/$m.log" 2>/dev/null | sed 's/^/    /' >>"$NOTES"
    fi
done

# The leaf cache: portcullisd prints its counters when it stops.  Delete the
# sandbox, stop the daemon (SIGTERM), read its log.
if [ -n "${PROC[pcl]:-}" ]; then
    PORTCULLIS_STATE_DIR=${SB_DIR[pcl]} "$PCL" delete "${SB_NAME[pcl]}" >>"$D/create.log" 2>&1 &&
        SANDBOXES=()
    kill "${PROC[pcl]}" 2>/dev/null
    for _ in $(seq 100); do kill -0 "${PROC[pcl]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${PROC[pcl]}" 2>/dev/null && echo "pcl: portcullisd did not stop on SIGTERM within 10 s" >>"$NOTES"
    wait "${PROC[pcl]}" 2>/dev/null
    forget_pid "${PROC[pcl]}"
    line=$(grep -a 'TLS leaf cache:' "$D/daemon-pcl.log" | tail -1)
    if [[ $line =~ ([0-9]+)\ hits,\ ([0-9]+)\ misses,\ ([0-9]+)\ evictions,\ ([0-9]+)\ entries ]]; then
        record pcl leaf_hits 0 "${BASH_REMATCH[1]}"
        record pcl leaf_misses 0 "${BASH_REMATCH[2]}"
        record pcl leaf_entries 0 "${BASH_REMATCH[4]}"
    else
        echo "pcl: no 'TLS leaf cache:' line in the daemon's log when it stopped" >>"$NOTES"
    fi
    record pcl conns_total 0 "${CONNS[pcl]:-0}"
    record pcl wrk_probes 0 "${PROBES[pcl]:-0}"
fi

[ "$(stat -c %Y "$PCLD")" = "$PCLD_MTIME" ] ||
    echo "portcullisd was rebuilt in $PCL_BIN during the run; the daemon measured is the one from before (it started at the beginning)" >>"$NOTES"
if [ "$EVENTS" = journal ]; then
    sup=$(journalctl -q -o cat --since "@$T0" _COMM=systemd-journal 2>/dev/null |
        awk '/^Suppressed [0-9]+ messages/ {n += $2} END {print n + 0}')
    [ "$sup" -gt 0 ] && echo "journald suppressed $sup messages (its rate limit) during the run" >>"$NOTES"
fi

{
    echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
    echo "portcullis $PCL_DESC from $PCL_BIN (built $(date -u -d "@$PCLD_MTIME" '+%H:%M UTC'))"
    [ -n "$HAPROXY" ] && echo "$("$HAPROXY" -v | head -1 | cut -d' ' -f1-3)"
    echo "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (1 worker) as the upstream"
    echo "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "$(openssl version | cut -d' ' -f1-2)"
    echo "$EVENTS_DESC"
    if [ "$HS_VERIFY" = 1 ]; then v="verifying certificate and name"; else v="not verifying certificates"; fi
    echo "$ROUNDS rounds, ${SECS}s per run; $HS_CONNS connections in flight for handshakes (tcpbench tlscrr, $v); wrk -t$WRK_THREADS -c$WRK_CONNS keep-alive"
} >"$D/env"

python3 "$HERE/report_tls.py" report "$RES" "$D/env" "$NOTES" $MODES >"$D/table.md" || die "report failed"
python3 "$HERE/mdsection.py" "$OUT" tls "$D/table.md" || die "cannot write $OUT"
cat "$D/table.md"
log "tables written to the tls section of $OUT"
