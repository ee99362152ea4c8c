#!/bin/bash
# Sandbox lifecycle: exit status, delete leaves no trace, create/exec/list,
# stale sandboxes, Ctrl-C, concurrent runs, daemon death is fail-closed,
# daemon restart keeps sandboxes, SIGHUP reload, CLI errors.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server web "$UP4" 8080 http
start_server web2 "$UP4" 8082 http

snapshot() {
    { iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
      ip6tables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
      ip -o link show | sed 's/^[0-9]*: //; s/ state [A-Z]*//; s/qlen.*//' | sort
      ip netns list | sort; } >"$1"
}

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  web:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
YAML
CURL=(curl -sS -m 5 --noproxy '*')

# --- CLI contract ---
"$PORTCULLIS" >/dev/null 2>&1; check "no command: exit 2" [ $? -eq 2 ]
"$PORTCULLIS" frobnicate >/dev/null 2>&1; check "unknown command: exit 2" [ $? -eq 2 ]
"$PORTCULLIS" run --bogus -- true >/dev/null 2>&1; check "unknown option: exit 2" [ $? -eq 2 ]
"$PORTCULLIS" --help | grep -q "portcullis run"; check "--help" [ $? -eq 0 ]
"$PORTCULLISD" --help | grep -q "Usage"; check "portcullisd --help" [ $? -eq 0 ]
"$PORTCULLISD" --port nope >/dev/null 2>&1; check "portcullisd bad option: exit 2" [ $? -eq 2 ]
printf 'version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - host: a.test\n        port: 80\n        protocol: rest\n' >"$T_DIR/bad.yaml"
msg=$("$PORTCULLIS" policy check "$T_DIR/bad.yaml" 2>&1); rc=$?
check "policy check: exit 1 with FILE:LINE:COL ($msg)" [ $rc -eq 1 ] && [[ "$msg" == "$T_DIR/bad.yaml:7:9: "* ]]
msg=$("$PORTCULLIS" run --policy "$T_DIR/bad.yaml" -- true 2>&1); rc=$?
check "run refuses an invalid policy with its position" [ $rc -ne 0 ] && [[ "$msg" == *"bad.yaml:7:9"* ]]
# A policy whose real path holds a newline (a symlink an untrusted tree may
# contain): it would write keys of its own into the sandbox's record.
printf 'version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - allowed_ips: ["198.18.0.1/32"]\n        port: 80\n' \
    >"$T_DIR/x
index=0
audit=1
.yaml"
ln -s "$T_DIR/x
index=0
audit=1
.yaml" "$T_DIR/innocent.yaml"
msg=$(PORTCULLIS_STATE_DIR=$T_DIR/nlstate "$PORTCULLIS" create nl --policy "$T_DIR/innocent.yaml" 2>&1); rc=$?
check "create refuses a policy whose path holds a newline ($msg)" [ $rc -ne 0 ] && [[ "$msg" == *"control character"* ]]
check "  and registers nothing" [ ! -e "$T_DIR/nlstate/sandboxes/nl" ]

snapshot "$T_DIR/before"
start_daemon

# --- exit status and cleanup of run ---
"$PORTCULLIS" run --policy "$POL" -- sh -c 'exit 7'
check "run returns the command's status" [ $? -eq 7 ]
"$PORTCULLIS" run --policy "$POL" -- /nonexistent/cmd 2>/dev/null
check "run of a missing command: 127" [ $? -eq 127 ]
out=$("$PORTCULLIS" run --policy "$POL" -- id -u)
check "runs as nobody by default" [ "$out" = "$(id -u nobody)" ]
out=$("$PORTCULLIS" run --policy "$POL" -- sh -c 'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status | tr -s "\t " " "')
check "no capabilities, no_new_privs ($out)" [ "$out" = "$(printf 'CapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1')" ]
"$PORTCULLIS" run --user root --policy "$POL" -- true 2>/dev/null
check "root without --allow-root is refused" [ $? -ne 0 ]
out=$("$PORTCULLIS" run --user root --allow-root --policy "$POL" -- sh -c 'id -u; grep CapEff /proc/self/status' 2>"$T_DIR/warn")
check "--allow-root runs as root without capabilities" [ "$out" = "$(printf '0\nCapEff:\t0000000000000000')" ]
check "--allow-root warns" grep -q "root" "$T_DIR/warn"

# --- persistent sandbox ---
T_SANDBOXES+=(life1)
"$PORTCULLIS" create life1 --policy "$POL" >/dev/null
check "create" [ $? -eq 0 ]
"$PORTCULLIS" create life1 --policy "$POL" >/dev/null 2>&1
check "create of an existing name fails" [ $? -ne 0 ]
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8080/exec")
check "exec in a persistent sandbox" [ "$out" = "ok GET /exec port 8080" ]
"$PORTCULLIS" list | grep -q "^life1 .*ready"
check "list shows it ready" [ $? -eq 0 ]
# A record that says its setup never finished (a create interrupted, or
# still running): its rules may be missing, so nothing may run in it.
conf=$PORTCULLIS_STATE_DIR/sandboxes/life1/sandbox.conf
check "  its record says complete" grep -qx 'complete=1' "$conf"
sed -i 's/^complete=1$/complete=0/' "$conf"
"$PORTCULLIS" exec life1 -- true 2>"$T_DIR/err"
rc=$?
check "exec refuses a sandbox whose setup did not finish ($(head -1 "$T_DIR/err"))" [ $rc -ne 0 ]
"$PORTCULLIS" list | grep -q "^life1 .*incomplete"
check "  list shows it incomplete" [ $? -eq 0 ]
sed -i 's/^complete=0$/complete=1/' "$conf"
"$PORTCULLIS" rules life1 | grep -q -- "REDIRECT --to-ports $DAEMON_PORT"
check "rules prints the applied REDIRECT" [ $? -eq 0 ]
ri=$(grep '^index=' "$PORTCULLIS_STATE_DIR/sandboxes/life1/sandbox.conf" | cut -d= -f2)
applied=$(iptables-save -t nat | grep -c "PCL${ri}")
check "the printed rules are the applied ones" [ "$applied" -gt 0 ]

# Daemon restart: the sandbox is still served.
stop_daemon
# (ip netns exec, not portcullis exec, which would start a private daemon)
ip netns exec portcullis-life1 "${CURL[@]}" "http://$UP4:8080/down" >/dev/null 2>&1
check "daemon down: connection fails (fail closed)" [ $? -ne 0 ]
ip netns exec portcullis-life1 "${CURL[@]}" "http://[$UP6]:8080/down" >/dev/null 2>&1
check "daemon down: IPv6 connection fails too" [ $? -ne 0 ]
check "daemon down: nothing reached the upstream" [ "$(server_requests web GET\ /down)" = 0 ]
# An unprivileged process that takes the free port is not the daemon: the
# sandbox's connections are reset, none reaches it.
: >"$T_DIR/impostor.log"
chmod 666 "$T_DIR/impostor.log"
setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c '
import socket, sys, threading
port, log = int(sys.argv[1]), sys.argv[2]
def serve(s):
    while True:
        c, _ = s.accept()
        open(log, "a").write("ACCEPT\n")
        c.close()
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    s = socket.socket(fam)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the daemon'"'"'s TIME_WAITs
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
' "$DAEMON_PORT" "$T_DIR/impostor.log" >"$T_DIR/impostor.out" 2>&1 &
imp=$!
T_PIDS+=($imp)
for _ in $(seq 100); do grep -q ready "$T_DIR/impostor.out" && break; sleep 0.05; done
check "impostor: an unprivileged listener holds the proxy port" grep -q ready "$T_DIR/impostor.out"
ip netns exec portcullis-life1 "${CURL[@]}" "http://$UP4:8080/down" >/dev/null 2>&1
check "impostor: IPv4 connection fails" [ $? -ne 0 ]
ip netns exec portcullis-life1 "${CURL[@]}" "http://[$UP6]:8080/down" >/dev/null 2>&1
check "impostor: IPv6 connection fails" [ $? -ne 0 ]
check "impostor: it accepted no connection" [ ! -s "$T_DIR/impostor.log" ]
kill $imp
wait $imp 2>/dev/null

# Socket activation: the service manager holds the listeners, so the port
# stays bound while the daemon restarts and a connection waits meanwhile.
/usr/bin/python3 "$HELPERS/activate.py" "$DAEMON_PORT" "$T_DIR/daemon.log" -- "${DAEMON_ARGV[@]}" \
    >"$T_DIR/activate.out" 2>&1 &
act=$!
T_PIDS+=($act)
for _ in $(seq 200); do [ -s "$PORTCULLIS_STATE_DIR/daemon.port" ] && break; sleep 0.05; done
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8080/activated")
check "socket activation: served on the inherited listeners" [ "$out" = "ok GET /activated port 8080" ]
check "  and the daemon says so" grep -q "socket activation: 2 listener(s)" "$T_DIR/daemon.log"
dpid=$(sed -n 's/^started //p' "$T_DIR/activate.out" | tail -1)
kill -TERM "$dpid"
for _ in $(seq 100); do grep -q "^exited $dpid" "$T_DIR/activate.out" && break; sleep 0.05; done
check "socket activation: the daemon exits 0" grep -q "^exited $dpid 0$" "$T_DIR/activate.out"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c '
import errno, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
    print("bound")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))' "$DAEMON_PORT" 2>&1)
check "socket activation: nobody else can bind the port while the daemon is down ($out)" [ "$out" = EADDRINUSE ]
ip netns exec portcullis-life1 "${CURL[@]}" -m 10 "http://$UP4:8080/queued" >"$T_DIR/queued.out" 2>&1 &
queued=$!
sleep 0.5
check "  a connection made meanwhile waits instead of failing" kill -0 $queued
kill -USR1 $act
wait $queued
check "  and is served once the daemon is back ($(cat "$T_DIR/queued.out"))" \
    [ "$(cat "$T_DIR/queued.out")" = "ok GET /queued port 8080" ]
kill -TERM $act
wait $act
check "socket activation: the restarted daemon exits 0 too" [ "$(grep -c '^exited [0-9]* 0$' "$T_DIR/activate.out")" = 2 ]
start_daemon
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8080/again")
check "daemon restarted: the sandbox is served again" [ "$out" = "ok GET /again port 8080" ]

# SIGHUP reload: the source is root-owned in a root-only dir -> re-read.
sed -i 's/port: 8080/port: 8082/' "$POL"
kill -HUP "$DAEMON_PID"
sleep 0.5
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8082/reloaded")
check "SIGHUP reloads the policy" [ "$out" = "ok GET /reloaded port 8082" ]
printf 'version: 1\nnetwork_policies:\n  web:\n    bogus: 1\n' >"$POL"
kill -HUP "$DAEMON_PID"
sleep 0.5
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8082/kept")
check "an invalid policy on SIGHUP keeps the old one" [ "$out" = "ok GET /kept port 8082" ]
check "and says why" grep -q "reload failed" "$T_DIR/daemon.log"

# The reloaded policy survives a daemon restart (the registered copy follows).
stop_daemon
start_daemon
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8082/restarted")
check "a reloaded policy survives a daemon restart" [ "$out" = "ok GET /restarted port 8082" ]

# Once something ran as root inside, the source file is no longer trusted
# (root without capabilities can write root-owned files).
"$PORTCULLIS" exec life1 --user root --allow-root -- true 2>/dev/null
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  web:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
YAML
kill -HUP "$DAEMON_PID"
sleep 0.5
out=$("$PORTCULLIS" exec life1 -- "${CURL[@]}" "http://$UP4:8082/root-used")
check "after a root command, SIGHUP keeps the registered policy" [ "$out" = "ok GET /root-used port 8082" ]
check "and says why" grep -q "ran as root" "$T_DIR/daemon.log"

# A registered policy that cannot be loaded denies everything, audit or not.
"$PORTCULLIS" create life-bad --audit --policy "$POL" >/dev/null
T_SANDBOXES+=(life-bad)
stop_daemon
echo "version: [" >"$PORTCULLIS_STATE_DIR/sandboxes/life-bad/policy.yaml"
start_daemon
mark_journal
"$PORTCULLIS" exec life-bad -- "${CURL[@]}" "http://$UP4:8080/bad" >/dev/null 2>&1
check "an unloadable policy denies, even in audit mode" [ $? -ne 0 ]
check "  with reason policy_invalid" journal_find PORTCULLIS_SANDBOX=life-bad \
    PORTCULLIS_ACTION=denied PORTCULLIS_REASON=policy_invalid
"$PORTCULLIS" delete life-bad >/dev/null

"$PORTCULLIS" delete life1
check "delete" [ $? -eq 0 ]
"$PORTCULLIS" delete life1
check "delete is idempotent" [ $? -eq 0 ]

# --- Ctrl-C and kill ---
write_policy "$POL" <<'YAML'
version: 1
network_policies: {}
YAML
# wait_ack NAME: until the daemon registered the sandbox.
wait_ack() {
    for _ in $(seq 100); do [ -f "$PORTCULLIS_STATE_DIR/sandboxes/$1/ack" ] && return 0; sleep 0.05; done
    return 1
}
# Ctrl-C as a terminal delivers it: SIGINT to the whole process group (a
# fresh group with SIGINT at its default, unlike a background job of a script).
python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setpgrp()
os.execvp(sys.argv[1], sys.argv[1:])' "$PORTCULLIS" run --name life-int --policy "$POL" -- sleep 30 &
rp=$!
wait_ack life-int
sleep 0.3
kill -INT -- -$rp
wait $rp
rc=$?
check "Ctrl-C: the command ends and run exits 130 ($rc)" [ $rc -eq 130 ]
check "Ctrl-C: sandbox removed" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-int" ]

"$PORTCULLIS" run --name life-term --policy "$POL" -- sleep 30 &
rp=$!
wait_ack life-term
sleep 0.3
kill -TERM $rp
wait $rp
rc=$?
check "SIGTERM to run is forwarded: exits 143 ($rc)" [ $rc -eq 143 ]
check "SIGTERM: sandbox removed" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-term" ]

"$PORTCULLIS" run --name life-kill --policy "$POL" -- sleep 30 &
rp=$!
wait_ack life-kill
sleep 0.3
pkill -KILL -P $rp sleep 2>/dev/null || kill -KILL $(pgrep -P $rp) 2>/dev/null
wait $rp
rc=$?
check "command killed: run exits 137 ($rc)" [ $rc -eq 137 ]
check "command killed: sandbox removed" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-kill" ]

# A run killed with SIGKILL cannot clean up: list shows it stale, delete removes it.
"$PORTCULLIS" run --name life-stale --policy "$POL" -- sleep 30 &
rp=$!
wait_ack life-stale
kill -KILL $rp
wait $rp 2>/dev/null
sleep 0.2
"$PORTCULLIS" list | grep -q "^life-stale .*stale"
check "list shows a crashed run as stale" [ $? -eq 0 ]
"$PORTCULLIS" run --policy "$POL" -- true 2>"$T_DIR/reap"
check "the next run removes the stale sandbox" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-stale" ]
check "  and says so" grep -q "life-stale" "$T_DIR/reap"
ip netns list | grep -q portcullis-life-stale
check "  including its namespace" [ $? -ne 0 ]

# --- concurrent runs ---
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  web:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
YAML
for i in 1 2 3 4; do
    "$PORTCULLIS" run --policy "$POL" -- "${CURL[@]}" "http://$UP4:8080/par$i" >"$T_DIR/par$i" 2>&1 &
    T_PIDS+=($!)
done
wait "${T_PIDS[@]: -4}"
ok=0
for i in 1 2 3 4; do [ "$(cat "$T_DIR/par$i")" = "ok GET /par$i port 8080" ] && ok=$((ok + 1)); done
check "4 concurrent runs side by side ($ok/4)" [ $ok -eq 4 ]

# --- from a mount namespace of its own (a systemd unit with PrivateTmp=, say):
# the daemon cannot see the tool's /run/netns mount, yet names the process.
# The client holds its connection a second before it sends, so the lookup
# cannot lose the race with a request that is over at once (it names a
# process only while it holds the socket). ---
cat >"$T_DIR/hold.py" <<PY
import socket, sys, time
s = socket.create_connection(("$UP4", 8080), 5)
time.sleep(1)
s.sendall(b"GET /%s HTTP/1.0\r\nHost: up.test\r\n\r\n" % sys.argv[1].encode())
print(s.recv(200).decode().split("\r\n\r\n")[-1])
PY
chmod 644 "$T_DIR/hold.py"
PY3=$(readlink -f /usr/bin/python3)
mark_journal
out=$(unshare -m --propagation slave "$PORTCULLIS" run --name life-mnt1 --policy "$POL" -- \
    /usr/bin/python3 "$T_DIR/hold.py" mnt1)
check "run from a private mount namespace ($out)" [ "$out" = "ok GET /mnt1 port 8080" ]
check "  journal: the process is named (run holds the namespace open)" \
    journal_find PORTCULLIS_SANDBOX=life-mnt1 PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_EXE="$PY3"
# A persistent one: nothing holds its namespace but the processes in it; the
# daemon finds it through the first one that connects.
out=$(unshare -m --propagation slave sh -c '"$1" create life-mnt2 --policy "$2" >/dev/null &&
    "$1" exec life-mnt2 -- /usr/bin/python3 "$3" mnt2; rc=$?; "$1" delete life-mnt2; exit $rc' \
    sh "$PORTCULLIS" "$POL" "$T_DIR/hold.py" 2>&1)
check "create and exec from a private mount namespace ($out)" [ "$out" = "ok GET /mnt2 port 8080" ]
check "  journal: the process is named (found through it)" \
    journal_find PORTCULLIS_SANDBOX=life-mnt2 PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_EXE="$PY3"
check "  and the sandbox is gone" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-mnt2" ]
# `delete` from here, where the namespace's mount is not visible, still ends
# the processes in it (through the namespace's recorded identity).
unshare -m --propagation slave sh -c '"$1" create life-mnt3 --policy "$2" >/dev/null &&
    { "$1" exec life-mnt3 -- sleep 60 >/dev/null 2>&1 & }' sh "$PORTCULLIS" "$POL"
ino=$(sed -n 's/^netns_ino=//p' "$PORTCULLIS_STATE_DIR/sandboxes/life-mnt3/sandbox.conf")
procs_in_mnt3() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$ino" ] && echo "${p#/proc/}"
    done
}
for _ in $(seq 50); do [ -n "$(procs_in_mnt3)" ] && break; sleep 0.1; done
check "a process runs in the sandbox made in a private mount namespace" [ -n "$ino" ] && [ -n "$(procs_in_mnt3)" ]
"$PORTCULLIS" delete life-mnt3
check "  delete from the host ends it ($(procs_in_mnt3))" [ -z "$(procs_in_mnt3)" ]
for p in $(procs_in_mnt3); do kill -9 "$p"; done # if it did not
check "  and removes the sandbox" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-mnt3" ]

# --- the daemon dies under a running command: warning, command goes on ---
# (4 s: run checks on the daemon once a second; a command that ends within
# a second of the daemon's stop can end before the first check after it)
"$PORTCULLIS" run --name life-dd --policy "$POL" -- sh -c 'sleep 4; exit 5' 2>"$T_DIR/dd.err" &
rp=$!
wait_ack life-dd
stop_daemon
wait $rp
rc=$?
check "the command keeps running and its status comes back ($rc)" [ $rc -eq 5 ]
check "  with a warning that the daemon is gone" grep -q "no longer running" "$T_DIR/dd.err"
start_daemon

# --- SIGTERM with flows open: the daemon resets them and stops at once ---
# (an inspected keep-alive connection, and one whose client has said nothing
# yet, used to keep it running until they ended by themselves)
POLS="$T_DIR/policy-stop.yaml"
write_policy "$POLS" <<'YAML'
version: 1
network_policies:
  stop:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        access: read-only
      - host: up.test
        port: 8082
        allowed_ips: ["198.18.0.0/24"]
YAML
"$PORTCULLIS" run --name life-stop --policy "$POLS" -- python3 -c '
import socket, sys, time
a = socket.create_connection((sys.argv[1], 8080), timeout=30)
a.sendall(b"GET /held HTTP/1.1\r\nHost: up.test\r\n\r\n")
a.recv(4096)
b = socket.create_connection((sys.argv[1], 8082), timeout=30)  # says nothing
time.sleep(1)
print("ready", flush=True)
ends = []
for s in (a, b):
    try:
        ends.append("eof" if s.recv(4096) == b"" else "data")
    except OSError as e:
        ends.append(type(e).__name__)
print(" ".join(ends))' "$UP4" >"$T_DIR/stop.out" 2>"$T_DIR/stop.err" &
rp=$!
for _ in $(seq 100); do grep -q ready "$T_DIR/stop.out" && break; sleep 0.1; done
check "two connections held open through the daemon" grep -q ready "$T_DIR/stop.out"
t0=$(date +%s%N)
stop_daemon
ms=$((($(date +%s%N) - t0) / 1000000))
# Before, it waited for the client's 30 s timeout.
check "SIGTERM: the daemon stops at once with them open ($ms ms)" [ "$ms" -lt 5000 ]
wait $rp
check "  and resets both ($(tail -1 "$T_DIR/stop.out"))" grep -qx "ConnectionResetError ConnectionResetError" "$T_DIR/stop.out"
start_daemon

# --- two registries share the host's nf_tables tables ---
# A sandbox of another registry (PORTCULLIS_STATE_DIR) made while ours
# exists finds the tables there; once ours is gone and then it, the tables
# must go too.  With a registry of created tables per state directory they
# stayed: ours was not the last to leave, and the other never listed them.
OTHER_STATE="/run/pcl-test-$T_ID-other"
other() { PORTCULLIS_STATE_DIR="$OTHER_STATE" PORTCULLIS_CA_DIR="$OTHER_STATE/ca" "$@"; }
mkdir -p "$OTHER_STATE"
# (env, not the function: $! must be the daemon itself)
env PORTCULLIS_STATE_DIR="$OTHER_STATE" PORTCULLIS_CA_DIR="$OTHER_STATE/ca" \
    "$PORTCULLISD" --port $((DAEMON_PORT + 1)) >"$T_DIR/other-daemon.log" 2>&1 &
other_pid=$!
T_PIDS+=("$other_pid")
T_CLEANUP+=("other \"\$PORTCULLIS\" delete life-reg2; rm -rf \"\$OTHER_STATE\"")
for _ in $(seq 200); do [ -s "$OTHER_STATE/daemon.port" ] && break; sleep 0.05; done
"$PORTCULLIS" create life-reg1 --policy "$POL" >/dev/null 2>&1
T_SANDBOXES+=(life-reg1)
other "$PORTCULLIS" create life-reg2 --policy "$POL" >"$T_DIR/other-create.log" 2>&1
check "a sandbox in a second registry ($(tail -1 "$T_DIR/other-create.log"))" \
    [ -d "$OTHER_STATE/sandboxes/life-reg2" ]
# The namespace's name is the host's: the same sandbox name in the second
# registry is refused, and the first one's sandbox is left alone (a failed
# create used to tear the namespace down, with its processes).
other "$PORTCULLIS" create life-reg1 --policy "$POL" >"$T_DIR/other-dup.log" 2>&1
rc=$?
check "the same name in a second registry is refused ($(tail -1 "$T_DIR/other-dup.log"))" [ $rc -ne 0 ]
out=$("$PORTCULLIS" exec life-reg1 -- echo alive 2>&1)
check "  and the first registry's sandbox still works ($out)" [ "$out" = alive ]
check "  (nothing registered in the second)" [ ! -e "$OTHER_STATE/sandboxes/life-reg1" ]
"$PORTCULLIS" delete life-reg1 >/dev/null 2>&1
other "$PORTCULLIS" delete life-reg2 >/dev/null 2>&1
check "  both deleted" [ ! -e "$PORTCULLIS_STATE_DIR/sandboxes/life-reg1" ]
check "  (the second registry's too)" [ ! -e "$OTHER_STATE/sandboxes/life-reg2" ]
kill "$other_pid" 2>/dev/null
wait "$other_pid" 2>/dev/null
check "  the second daemon is gone" bash -c "! kill -0 $other_pid 2>/dev/null"
rm -rf "$OTHER_STATE"
# Reaped: its PID is no longer ours to kill at exit.
unset 'T_PIDS[-1]'
T_CLEANUP=()
check "  and no registry of created tables is left" [ ! -e /run/portcullis-nft-tables ]

# --- nothing left behind ---
stop_daemon
sleep 0.2
snapshot "$T_DIR/after"
diff -u "$T_DIR/before" "$T_DIR/after" >&2
check "iptables-save, ip6tables-save, ip link and ip netns list as before" [ $? -eq 0 ]
