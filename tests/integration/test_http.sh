#!/bin/bash
# HTTP inspection (protocol: rest): per-request rules on kept-alive and
# pipelined connections, 403 JSON, smuggling shapes, h2c, WebSocket through
# an inspected endpoint, the 101 with its first frame, an unsolicited 101.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server web "$UP4" 8080 http
: >"$T_DIR/ws.log"
ip netns exec "$UP_NS" python3 "$HELPERS/ws.py" server --bind "$UP4" --port 8090 --log "$T_DIR/ws.log" >"$T_DIR/ws.out" 2>&1 &
T_PIDS+=($!)
ip netns exec "$UP_NS" python3 "$HELPERS/ws.py" server --bind "$UP4" --port 8091 --first-frame --log "$T_DIR/ws.log" >"$T_DIR/ws2.out" 2>&1 &
T_PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$T_DIR/ws.out" && grep -q ready "$T_DIR/ws2.out" && break; sleep 0.05; done
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  api:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        access: read-only
      - host: up.test
        ports: [8090, 8091]
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        rules:
          - allow: {method: GET, path: "/ws"}
YAML
T_SANDBOXES+=(web)
"$PORTCULLIS" create web --policy "$POL" >/dev/null || die "create"
CURL=(curl -sS -m 5 --noproxy '*' --resolve "up.test:8080:$UP4")
RAW=(python3 "$HELPERS/rawhttp.py" "$UP4" 8080)
mark_journal

out=$("$PORTCULLIS" exec web -- "${CURL[@]}" "http://up.test:8080/get")
check "GET allowed on a read-only endpoint" [ "$out" = "ok GET /get port 8080" ]
out=$("$PORTCULLIS" exec web -- "${CURL[@]}" -i -X POST -d x=1 "http://up.test:8080/post")
check "POST gets a 403" grep -q "^HTTP/1.1 403" <<<"$out"
check "  with a JSON body naming the policy" grep -q '"error":"policy_denied","policy":"api"' <<<"$out"
check "  and X-Portcullis-Policy" grep -qi "^X-Portcullis-Policy: api" <<<"$out"
check "  and the POST never reached the upstream" [ "$(server_requests web POST)" = 0 ]

# Keep-alive: an allowed then a denied request on one connection.
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" \
    'GET /first HTTP/1.1\r\nHost: up.test\r\n\r\n' 'DELETE /second HTTP/1.1\r\nHost: up.test\r\n\r\n')
check "keep-alive: the first request is answered" grep -q "ok GET /first" <<<"$out"
check "  the second is refused with 403 and the connection closes" grep -q "403 Forbidden" <<<"$out"
check "  the DELETE never reached the upstream" [ "$(server_requests web DELETE)" = 0 ]

# Pipelined: both requests in one write.
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" \
    'GET /pipe1 HTTP/1.1\r\nHost: up.test\r\n\r\nPUT /pipe2 HTTP/1.1\r\nHost: up.test\r\nContent-Length: 2\r\n\r\nhi')
check "pipelined: the allowed one is answered" grep -q "ok GET /pipe1" <<<"$out"
check "  the pipelined PUT is refused" grep -q "403 Forbidden" <<<"$out"
check "  and never reached the upstream" [ "$(server_requests web PUT)" = 0 ]

# Smuggling shapes and h2c: 400, nothing upstream.
before=$(server_connects web)
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" \
    'GET /s HTTP/1.1\r\nHost: up.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
check "Content-Length with Transfer-Encoding: 400" grep -q "^HTTP/1.1 400" <<<"$out"
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" 'GET /s HTTP/1.1\nHost: up.test\n\n')
check "bare LF: 400" grep -q "^HTTP/1.1 400" <<<"$out"
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" \
    'GET /h2c HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
check "Upgrade: h2c is not honoured (400)" grep -q "^HTTP/1.1 400" <<<"$out"
check "  no request of those reached the upstream" [ "$(server_requests web 'GET /s')" = 0 ] && [ "$(server_requests web 'GET /h2c')" = 0 ]

# Dot segments cannot dodge an allow rule: /ws/../admin is /admin.
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/rawhttp.py" "$UP4" 8090 \
    'GET /ws/../admin HTTP/1.1\r\nHost: up.test:8090\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
check "/ws/../admin does not pass as /ws" grep -q "403 Forbidden" <<<"$out"
check "  and never reached the upstream" [ "$(grep -c admin "$T_DIR/ws.log")" = 0 ]

# WebSocket through an inspected endpoint.
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/ws.py" client "$UP4" 8090 up.test 5)
check "WebSocket echo, text and binary frames both ways ($out)" [ "$out" = "ok 10" ]
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/ws.py" client "$UP4" 8091 up.test 3)
check "the 101 and the first frame in one write ($out)" [ "$out" = "$(printf 'first hello\nok 6')" ]
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/rawhttp.py" "$UP4" 8090 'GET /ws/x HTTP/1.1\r\nHost: up.test\r\n\r\n')
check "a path outside the rules is refused on the WebSocket endpoint" grep -q "403 Forbidden" <<<"$out"

# A client that sends its first frame right behind the upgrade request,
# before the 101: the frame waits, then goes on raw, once.
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/rawhttp.py" "$UP4" 8090 \
    'GET /ws HTTP/1.1\r\nHost: up.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\x00\x00\x00\x00early\x88\x80\x00\x00\x00\x00')
check "bytes sent before the 101 arrive after it, once" [ "$(grep -ao early <<<"$out" | wc -l)" = 1 ]
check "  after the 101 head" grep -q "^HTTP/1.1 101" <<<"$out"

# Unsolicited 101: the ws server answers a plain GET with 101.
out=$("$PORTCULLIS" exec web -- python3 "$HELPERS/rawhttp.py" "$UP4" 8090 'GET /ws HTTP/1.1\r\nHost: up.test\r\n\r\n')
check "an unsolicited 101 never reaches the client" [ -z "$out" ]
check "  and is a high-severity finding" journal_find PORTCULLIS_SANDBOX=web \
    PORTCULLIS_EVENT=FINDING:UNSOLICITED_UPGRADE PORTCULLIS_SEVERITY=high PRIORITY=3

# Host must match the endpoint.
out=$("$PORTCULLIS" exec web -- "${RAW[@]}" 'GET /get HTTP/1.1\r\nHost: evil.test\r\n\r\n')
check "a Host that contradicts the destination is refused" grep -q "403 Forbidden" <<<"$out"
check "  as host_mismatch" journal_find PORTCULLIS_SANDBOX=web PORTCULLIS_REASON=host_mismatch

# Events.
check "journal: HTTP:GET allowed with method and path" journal_find PORTCULLIS_SANDBOX=web \
    PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_ACTION=allowed PORTCULLIS_HTTP_METHOD=GET \
    PORTCULLIS_HTTP_PATH=/get PORTCULLIS_POLICY=api PORTCULLIS_DST_PORT=8080
e=$(journal_find PORTCULLIS_SANDBOX=web PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_HTTP_PATH=/get)
check "journal: its OCSF_JSON is HTTP Activity, whole and under 512 bytes" python3 -c '
import json,sys; e=json.loads(sys.argv[1]); raw=e["OCSF_JSON"]; o=json.loads(raw)
assert len(("OCSF_JSON=" + raw).encode()) < 512, len(raw)  # journald compresses from 512
assert o["class_uid"] == 4002 and o["type_uid"] == 400203 and o["action_id"] == 1, o
assert o["http_request"] == {"http_method": "GET", "url": {"path": "/get"}}, o
assert o["actor"]["process"]["pid"] == int(e["PORTCULLIS_PID"]), o
assert o["actor"]["process"]["file"]["path"] == e["PORTCULLIS_EXE"], o
assert o["unmapped"]["sandbox"] == "web" and o["unmapped"]["policy"] == "api", o' "${e:-{\}}"
check "journal: HTTP:POST denied by an L7 rule" journal_find PORTCULLIS_SANDBOX=web \
    PORTCULLIS_EVENT=HTTP:POST PORTCULLIS_ACTION=denied PORTCULLIS_REASON=l7_rule \
    PORTCULLIS_HTTP_PATH=/post
check "journal: an allowed upgrade is marked" journal_find PORTCULLIS_SANDBOX=web \
    PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_REASON=allow_upgrade PORTCULLIS_HTTP_PATH=/ws
check "journal: the switch to raw relay is its own event" journal_find PORTCULLIS_SANDBOX=web \
    PORTCULLIS_EVENT=HTTP:UPGRADE

# A long executable path reaches the request's event whole (it was once cut
# at 255 bytes).
LONG_EXE_DIR=$T_DIR/$(printf 'd%.0s' {1..100})/$(printf 'e%.0s' {1..100})/$(printf 'f%.0s' {1..100})
mkdir -p "$LONG_EXE_DIR" && cp "$(command -v curl)" "$LONG_EXE_DIR/curl"
"$PORTCULLIS" exec web -- "$LONG_EXE_DIR/curl" -sS -m 5 --noproxy '*' \
    --resolve "up.test:8080:$UP4" "http://up.test:8080/long-exe" >/dev/null
e=$(journal_find PORTCULLIS_SANDBOX=web PORTCULLIS_HTTP_PATH=/long-exe \
    "PORTCULLIS_EXE=$LONG_EXE_DIR/curl")
check "journal: a ${#LONG_EXE_DIR}-byte executable path is whole in HTTP:GET" [ -n "$e" ]
check "  and its OCSF_JSON stays under 512 bytes with the file name" python3 -c '
import json,sys; e=json.loads(sys.argv[1]); raw=e["OCSF_JSON"]; o=json.loads(raw)
assert len(("OCSF_JSON=" + raw).encode()) < 512, len(raw)
assert o["actor"]["process"] == {"pid": int(e["PORTCULLIS_PID"]), "name": "curl"}, o
assert o["http_request"]["url"]["path"] == "/long-exe", o' "${e:-{\}}"

# Audit enforcement: the request passes, the event says audit.
"$PORTCULLIS" create web-audit --audit --policy "$POL" >/dev/null
T_SANDBOXES+=(web-audit)
out=$("$PORTCULLIS" exec web-audit -- "${CURL[@]}" -X POST -d x=1 "http://up.test:8080/audited")
check "audit mode: the POST passes" [ "$out" = "ok POST /audited port 8080" ]
check "  and is logged as audit" journal_find PORTCULLIS_SANDBOX=web-audit PORTCULLIS_EVENT=HTTP:POST \
    PORTCULLIS_ACTION=audit
