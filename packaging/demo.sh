#!/bin/sh
# Install what is missing, build, and show portcullis at work: a sandboxed
# curl against a local test server (in a namespace of its own, 198.18.0.10),
# once allowed (port 8080) and once denied (port 9090), then the denial read
# back from the journal.  Removes everything it made.
. "$(dirname "$0")/common.sh"
PCL="$BUILD/bin/portcullis"
NS=pcl-demo-up
IF=pcldemo0
WORK=$(mktemp -d /tmp/pcl-demo.XXXXXX)
SERVER=
ROUTE_ADDED=

cleanup() {
    set +e
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    ip netns del $NS 2>/dev/null
    ip link del $IF 2>/dev/null
    [ -n "$ROUTE_ADDED" ] && ip route del blackhole 198.18.0.0/15 metric 4000 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The test server: its own namespace, reached over a veth pair.  A blackhole
# keeps 198.18.0.0/15 on this machine whatever happens.
if ! ip route show | grep -q '^blackhole 198.18.0.0/15'; then
    ip route add blackhole 198.18.0.0/15 metric 4000 && ROUTE_ADDED=1
fi
ip netns add $NS
ip link add $IF type veth peer name eth0 netns $NS
ip addr add 198.18.0.1/24 dev $IF
ip link set $IF up
ip -n $NS link set lo up
ip -n $NS addr add 198.18.0.10/24 dev eth0
ip -n $NS link set eth0 up
ip -n $NS route add default via 198.18.0.1
cat >"$WORK/server.py" <<'PY'
import http.server, socketserver, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from the test server, port %d\n" % self.server.server_address[1]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
servers = [socketserver.ThreadingTCPServer(("198.18.0.10", p), H) for p in (8080, 9090)]
for s in servers[1:]: threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
PY
ip netns exec $NS python3 "$WORK/server.py" &
SERVER=$!
sleep 0.5
SINCE=$(date '+%Y-%m-%d %H:%M:%S')

echo
echo "== 1. allowed: the policy lists 198.18.0.10 port 8080"
echo "\$ portcullis run --policy examples/demo.yaml -- curl http://198.18.0.10:8080/"
"$PCL" run --policy "$SRC/examples/demo.yaml" -- curl -sS -m 5 http://198.18.0.10:8080/
echo
echo "== 2. denied: port 9090 is not in the policy (the connection is reset)"
echo "\$ portcullis run --policy examples/demo.yaml -- curl http://198.18.0.10:9090/"
if "$PCL" run --policy "$SRC/examples/demo.yaml" -- curl -sS -m 5 http://198.18.0.10:9090/; then
    echo "demo: the request should have been denied" >&2
    exit 1
fi
echo "(curl failed: denied, as it should be)"
echo
echo "== 3. the denial, read back from the journal"
echo "\$ portcullis events --denied --since '$SINCE'"
for _ in $(seq 50); do
    out=$("$PCL" events --denied --since "$SINCE")
    echo "$out" | grep -q 9090 && break
    sleep 0.2
done
echo "$out"
echo "$out" | grep -q 9090 || { echo "demo: the denial did not reach the journal" >&2; exit 1; }
echo
echo "The same as JSON: portcullis events --denied --json; raw journal: journalctl SYSLOG_IDENTIFIER=portcullisd"
