#!/bin/bash
# The first command a user types needs no service: `portcullis run` starts a
# private portcullisd when none serves the host, and that daemon goes away
# when its last sandbox does.  Also: a daemon short of file descriptors backs
# off, logs once and recovers.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server web "$UP4" 8080 http
start_server echo "$UP4" 7003 echo

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  web:
    endpoints:
      - allowed_ips: ["198.18.0.10/32"]
        ports: [8080, 7003]
YAML
mkdir -p "$PORTCULLIS_STATE_DIR"
out=$("$PORTCULLIS" run --policy "$POL" -- curl -sS -m 5 "http://$UP4:8080/private")
check "run starts a private daemon and the request passes" [ "$out" = "ok GET /private port 8080" ]
pid=$(head -1 "$PORTCULLIS_STATE_DIR/daemon.lock" 2>/dev/null)
gone=no
for _ in $(seq 100); do
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then gone=yes; break; fi
    sleep 0.1
done
check "the private daemon exits once no sandbox is left" [ $gone = yes ]
"$PORTCULLIS" run --policy "$POL" -- curl -sS -m 5 "http://$UP4:8080/missing" >/dev/null 2>&1
out=$("$PORTCULLIS" run --policy "$POL" -- curl -sS -m 5 "http://$UP4:8080/twice")
check "a second run starts another" [ "$out" = "ok GET /twice port 8080" ]

# File descriptor exhaustion: 100 connections against a daemon allowed ~60 fds.
start_daemon_lowfd() {
    write_hosts
    prlimit --nofile=60:60 -- "$PORTCULLISD" >>"$T_DIR/daemon.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 200); do [ -s "$PORTCULLIS_STATE_DIR/daemon.port" ] && return 0; sleep 0.05; done
    die "daemon did not start"
}
for _ in $(seq 50); do [ -s "$PORTCULLIS_STATE_DIR/daemon.port" ] || break; sleep 0.1; done
# A start while the registry's lock is still held by a daemon that no longer
# serves (no port file: the private daemon on its way out, which under ASan
# spends a while in its exit) waits for the lock instead of failing.  A
# stand-in takes the lock once that daemon let go, and holds it a second.
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.lockf(f, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(1)' "$PORTCULLIS_STATE_DIR/daemon.lock" >"$T_DIR/holder.out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q held "$T_DIR/holder.out" && break; sleep 0.1; done
start_daemon_lowfd
wait "$holder"
check "a start waits for the lock of a daemon that no longer serves" \
    bash -c "kill -0 $DAEMON_PID && ! grep -q 'already serving' '$T_DIR/daemon.log'"
"$PORTCULLIS" create fdtest --policy "$POL" >/dev/null
T_SANDBOXES+=(fdtest)
"$PORTCULLIS" exec fdtest -- python3 "$HELPERS/client.py" parallel "$UP4" 7003 100 >/dev/null 2>&1
check "the daemon logged the descriptor shortage once" [ "$(grep -c 'out of file descriptors' "$T_DIR/daemon.log")" -ge 1 ]
sleep 0.5
out=$("$PORTCULLIS" exec fdtest -- curl -sS -m 5 "http://$UP4:8080/recovered")
check "and recovers: the next connection works" [ "$out" = "ok GET /recovered port 8080" ]
check "the daemon is still running" kill -0 "$DAEMON_PID"
