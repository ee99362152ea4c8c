#!/bin/bash
# What must never leave a sandbox: spoofed sources, UDP, ICMP, anything
# routed (even with forwarding switched on for its interfaces), and direct
# connections to the daemon's port.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server web "$UP4" 8080 http
: >"$T_DIR/udp.log"
ip netns exec "$UP_NS" python3 "$HELPERS/udpsink.py" --bind "$UP4" --port 5300 --log "$T_DIR/udp.log" >"$T_DIR/udp.out" 2>&1 &
T_PIDS+=($!)
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  web:
    endpoints:
      - allowed_ips: ["198.18.0.0/24"]
        ports: [8080, 5300]
YAML
T_SANDBOXES+=(box)
"$PORTCULLIS" create box --policy "$POL" >/dev/null || die "create"
NS=portcullis-box
HOSTIF=$(sed -n 's/^host_ifname=//p' "$PORTCULLIS_STATE_DIR/sandboxes/box/sandbox.conf")
CURL=(curl -sS -m 5 --noproxy '*')

out=$("$PORTCULLIS" exec box -- "${CURL[@]}" "http://$UP4:8080/ok")
check "baseline: allowed request passes" [ "$out" = "ok GET /ok port 8080" ]

# Forwarding on for the sandbox's and the upstream's interfaces: only our
# FORWARD rule stands between the sandbox and a routed path.
old_fwd_sb=$(sysctl -n net.ipv4.conf.$HOSTIF.forwarding)
old_fwd_up=$(sysctl -n net.ipv4.conf.$UP_IF.forwarding)
sysctl -qw net.ipv4.conf.$HOSTIF.forwarding=1 net.ipv4.conf.$UP_IF.forwarding=1
restore_fwd() {
    sysctl -qw net.ipv4.conf.$HOSTIF.forwarding=$old_fwd_sb 2>/dev/null
    sysctl -qw net.ipv4.conf.$UP_IF.forwarding=$old_fwd_up 2>/dev/null
}

# Even root inside the namespace (ip netns exec: all capabilities there).
ip netns exec $NS python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5): s.sendto(b"x", ("198.18.0.10", 5300))'
ip netns exec "$UP_NS" python3 "$HELPERS/icmpping.py" "$UP4_HOST"
check "ICMP check works (upstream pings the host)" [ $? -eq 0 ]
ip netns exec $NS python3 "$HELPERS/icmpping.py" "$UP4"
ping_rc=$?
# Spoofed source: an extra address on the sandbox side.
ip -n $NS addr add 10.99.0.7/32 dev eth0
ip netns exec $NS "${CURL[@]}" --interface 10.99.0.7 "http://$UP4:8080/spoofed" >/dev/null 2>&1
spoof_rc=$?
ip -n $NS addr del 10.99.0.7/32 dev eth0
sleep 0.5
restore_fwd
check "UDP from the sandbox never arrives" [ "$(grep -c DATAGRAM "$T_DIR/udp.log")" = 0 ]
check "ICMP from the sandbox is dropped" [ $ping_rc -ne 0 ]
check "spoofed source: connection fails" [ $spoof_rc -ne 0 ]
check "spoofed source: nothing reached the upstream" [ "$(server_requests web GET\ /spoofed)" = 0 ]

# A direct connection to the daemon's port (not REDIRECTed) is dropped.
HOST4=$(sed -n 's/^host_v4=//p' "$PORTCULLIS_STATE_DIR/sandboxes/box/sandbox.conf")
out=$("$PORTCULLIS" exec box -- "${CURL[@]}" "http://$HOST4:$DAEMON_PORT/" 2>&1)
check "the daemon's own port is not reachable from the sandbox" [ $? -ne 0 ]
# IPv6 UDP as well.
ip netns exec $NS python3 -c '
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(3):
    try: s.sendto(b"x", ("2001:db8::10", 5300))
    except OSError: pass' 2>/dev/null
sleep 0.3
check "IPv6 UDP never arrives either" [ "$(grep -c DATAGRAM "$T_DIR/udp.log")" = 0 ]

# The command cannot act outside its network namespace through the host.
out=$("$PORTCULLIS" exec box -- ls -A /run | tr '\n' ' ')
check "/run is masked (host sockets, the registry): '$out'" [ "$out" = "lock portcullis " ]
out=$("$PORTCULLIS" exec box -- ls -A /run/portcullis | tr '\n' ' ')
check "  and holds only the sandbox's trust store: '$out'" [ "$out" = "ca-bundle.crt ca.crt " ]
"$PORTCULLIS" exec box --user root --allow-root -- cat "$PORTCULLIS_CA_DIR/ca.key" >/dev/null 2>&1
check "the interception CA's key is unreadable inside, even as root" [ $? -ne 0 ]
check "  while it exists on the host" [ -s "$PORTCULLIS_CA_DIR/ca.key" ]
"$PORTCULLIS" exec box -- ls "$PORTCULLIS_STATE_DIR" >/dev/null 2>&1
check "the registry is invisible inside" [ $? -ne 0 ]
"$PORTCULLIS" exec box -- sh -c "kill -0 $DAEMON_PID" >/dev/null 2>&1
check "host processes are invisible (own PID namespace)" [ $? -ne 0 ]
out=$("$PORTCULLIS" exec box -- sh -c 'echo $$')
check "the command runs under an init of its own (pid $out)" [ "$out" = 2 ]
out=$("$PORTCULLIS" exec box -- python3 -c '
import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("allowed")
except OSError as e:
    print(e.errno)')
check "TIOCSTI is refused with EPERM, not just ENOTTY ($out)" [ "$out" = 1 ]
# The same ioctls through the 32-bit system call entry (another arch and other
# numbers for the filter): a 64-bit process can use it with int $0x80.
COMPAT_IOCTL=$PCL_BIN/test-helpers/compat_ioctl
if [ -x "$COMPAT_IOCTL" ]; then
    out=$("$COMPAT_IOCTL" TIOCSTI </dev/null)
    check "  outside a sandbox, a 32-bit TIOCSTI on a non-terminal gets ENOTTY ($out)" [ "$out" = 25 ]
    for req in TIOCSTI TIOCLINUX; do
        out=$("$PORTCULLIS" exec box -- "$COMPAT_IOCTL" "$req" </dev/null)
        check "  $req through the 32-bit entry is refused with EPERM too ($out)" [ "$out" = 1 ]
    done
fi
# A socket the invoker leaves open (no FD_CLOEXEC) belongs to the host's
# network namespace: it is closed before the command runs; a pipe stays.
out=$(/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
os.set_inheritable(s.fileno(), True)
r, w = os.pipe()
os.set_inheritable(r, True)
os.execvp(sys.argv[1], sys.argv[1:])' "$PORTCULLIS" exec box -- sh -c \
    'cd /proc/self/fd && for f in *; do [ "$f" -gt 2 ] && readlink "$f"; done; true' 2>&1 | sed 's/:.*//' | sort -u | tr '\n' ' ')
ok=no
[[ "$out" != *socket* && "$out" == *pipe* ]] && ok=yes
check "an inherited socket is closed, an inherited pipe is not ($out)" [ $ok = yes ]
out=$("$PORTCULLIS" exec box -- sh -c 'grep nameserver /etc/resolv.conf | head -1')
check "the sandbox's resolv.conf points at the host side ($out)" [ "$out" = "nameserver $HOST4" ]
# Killing the init would end the command with it; from inside it is ignored.
out=$("$PORTCULLIS" exec box -- sh -c 'kill -KILL 1; kill -TERM 1; sleep 0.2; echo survived' 2>/dev/null)
check "the sandbox init cannot be killed from inside ($out)" [ "$out" = survived ]
