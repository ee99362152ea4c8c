#!/bin/bash
# Bytes through a sandbox: 64 MiB each way with matching checksums,
# half-close in both directions, 100 parallel connections, IPv4 and IPv6.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server sink4 "$UP4" 7001 sink
start_server source4 "$UP4" 7002 source --bytes $((64 * 1024 * 1024))
start_server echo4 "$UP4" 7003 echo
start_server sink6 "$UP6" 7001 sink
start_server echo6 "$UP6" 7003 echo
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  bulk:
    endpoints:
      - allowed_ips: ["198.18.0.10/32", "2001:db8::10/128"]
        ports: [7001, 7002, 7003, 7009, 7010]
YAML
CLIENT="$HELPERS/client.py"

out=$("$PORTCULLIS" run --policy "$POL" -- /usr/bin/python3 "$CLIENT" halfclose "$UP4" 7001 $((64 * 1024 * 1024)))
check "64 MiB upload, half-closed, checksum matches (v4): $out" [ $? -eq 0 ]
want=$(python3 -c '
import hashlib
h=hashlib.sha256(); b=bytes(range(256))*256
for _ in range(1024): h.update(b)
print(h.hexdigest(), 64*1024*1024)')
out=$("$PORTCULLIS" run --policy "$POL" -- /usr/bin/python3 "$CLIENT" download "$UP4" 7002)
check "64 MiB download, checksum matches" [ "$out" = "$want" ]
out=$("$PORTCULLIS" run --policy "$POL" -- /usr/bin/python3 "$CLIENT" halfclose "$UP6" 7001 $((8 * 1024 * 1024)))
check "8 MiB upload over IPv6, half-closed: $out" [ $? -eq 0 ]
out=$("$PORTCULLIS" run --policy "$POL" -- /usr/bin/python3 "$CLIENT" parallel "$UP4" 7003 100)
check "100 parallel connections (v4): $out" [ "$out" = "ok 100" ]
out=$("$PORTCULLIS" run --policy "$POL" -- /usr/bin/python3 "$CLIENT" parallel "$UP6" 7003 100)
check "100 parallel connections (v6): $out" [ "$out" = "ok 100" ]
# Connections a client keeps open without a word (pools that connect ahead)
# stop counting against the sandbox's pending flows (1,024) once the
# first-byte wait is over: 1,200 of them, opened in batches, and an echo
# after them still goes through.
out=$("$PORTCULLIS" run --name relay-idle --policy "$POL" -- /usr/bin/python3 -c '
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
held = []
for _ in range(3):
    held += [socket.create_connection((sys.argv[1], 7003)) for _ in range(400)]
    time.sleep(0.6)
s = socket.create_connection((sys.argv[1], 7003), timeout=5)
s.sendall(b"ping")
print(len(held), s.recv(16).decode())' "$UP4" 2>&1)
check "1,200 silent connections held open, then an echo still works ($out)" [ "$out" = "1200 ping" ]
check "  none of them refused (flow_limit)" \
    [ "$(grep '"sandbox":"relay-idle"' "$T_DIR/events.jsonl" | grep -c '"reason":"flow_limit"')" = 0 ]
# The server closes first after sending (source): the client sees a clean EOF
# and the full stream — the other half-close direction.
out=$("$PORTCULLIS" run --policy "$POL" -- sh -c "python3 $CLIENT download $UP4 7002 | cut -d' ' -f2")
check "server-side close delivers every byte then EOF" [ "$out" = "$((64 * 1024 * 1024))" ]

# The upstream refuses: the client sees a reset, not a clean close.
out=$("$PORTCULLIS" run --policy "$POL" -- python3 "$CLIENT" expect_reset "$UP4" 7009 2>&1)
check "upstream refusing -> reset to the client ($out)" [ $? -eq 0 ]
# The upstream never answers (SYNs dropped inside its namespace): after the
# connect timeout the client gets a reset.
ip netns exec "$UP_NS" iptables -A INPUT -p tcp --dport 7010 -j DROP
stop_daemon
start_daemon --connect-timeout 1000
start=$SECONDS
out=$("$PORTCULLIS" run --policy "$POL" -- python3 "$CLIENT" expect_reset "$UP4" 7010 2>&1)
rc=$?
took=$((SECONDS - start))
check "upstream timing out -> reset to the client ($out after ${took}s)" [ $rc -eq 0 ] && [ $took -lt 15 ]
