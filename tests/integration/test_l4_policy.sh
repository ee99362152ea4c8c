#!/bin/bash
# Allowed and denied by host, port and address, IPv4 and IPv6; always-blocked
# and private addresses; --audit; the journal fields of each decision.
. "$(dirname "$0")/lib.sh"
require_root
ensure_journal
setup_upstream
start_server web4 "$UP4" 8080 http
start_server web6 "$UP6" 8080 http
start_server wrongport "$UP4" 9999 http
start_server byaddr "$UP4B" 9090 http
start_server other8080 "$UP4B" 8080 http
start_server private "$UP4B" 8081 http
start_server meta "$UP_LL" 8080 http
start_server banner "$UP4" 2525 banner
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  upstream_web:
    name: upstream web
    endpoints:
      - host: up.test
        ports: [8080, 2525]
        allowed_ips: ["198.18.0.0/24", "2001:db8::/64"]
  by_address:
    endpoints:
      - allowed_ips: ["198.18.0.11/32"]
        ports: [9090, 9091]
  private_no_ips:
    endpoints:
      - host: other.test
        port: 8081
  meta:
    endpoints:
      - host: metadata.test
        port: 8080
        allowed_ips: ["169.254.77.0/24"]
YAML
"$PORTCULLIS" policy check "$POL" >/dev/null || die "policy check failed"

CURL=(curl -sS -m 5 --noproxy '*')
mark_journal
T_START=$(date '+%Y-%m-%d %H:%M:%S')

# --- allowed ---
out=$("$PORTCULLIS" run --name l4-a --policy "$POL" -- "${CURL[@]}" "http://$UP4:8080/v4") || true
check "IPv4 host endpoint allowed" [ "$out" = "ok GET /v4 port 8080" ]
out=$("$PORTCULLIS" run --name l4-b --policy "$POL" -- "${CURL[@]}" "http://[$UP6]:8080/v6") || true
check "IPv6 host endpoint allowed" [ "$out" = "ok GET /v6 port 8080" ]
out=$("$PORTCULLIS" run --name l4-c --policy "$POL" -- "${CURL[@]}" "http://$UP4B:9090/addr") || true
check "address-only endpoint allowed" [ "$out" = "ok GET /addr port 9090" ]

# --- denied ---
"$PORTCULLIS" run --name l4-d --policy "$POL" -- "${CURL[@]}" "http://$UP4:9999/" >/dev/null 2>&1
check "port not in policy: curl fails" [ $? -ne 0 ]
check "port not in policy: upstream saw nothing" [ "$(server_connects wrongport)" = 0 ]
"$PORTCULLIS" run --name l4-e --policy "$POL" -- "${CURL[@]}" "http://$UP4B:8080/" >/dev/null 2>&1
check "address not among the host's answers: denied" [ $? -ne 0 ]
check "address not among the host's answers: upstream saw nothing" [ "$(server_connects other8080)" = 0 ]
"$PORTCULLIS" run --name l4-f --policy "$POL" -- "${CURL[@]}" "http://$UP4B:8081/" >/dev/null 2>&1
check "private address without allowed_ips: denied" [ $? -ne 0 ]
check "private address: upstream saw nothing" [ "$(server_connects private)" = 0 ]
"$PORTCULLIS" run --name l4-g --policy "$POL" -- "${CURL[@]}" "http://$UP_LL:8080/" >/dev/null 2>&1
check "link-local address always blocked, even if listed" [ $? -ne 0 ]
check "link-local: upstream saw nothing" [ "$(server_connects meta)" = 0 ]
"$PORTCULLIS" run --name l4-h --policy "$POL" -- sh -c \
    'gw=$(ip -4 route show default | cut -d" " -f3); curl -sS -m 5 http://$gw:8080/' >/dev/null 2>&1
check "host side of the veth always blocked" [ $? -ne 0 ]
"$PORTCULLIS" run --name l4-i --policy "$POL" -- "${CURL[@]}" "http://[$UP6]:9999/" >/dev/null 2>&1
check "IPv6 port not in policy: denied" [ $? -ne 0 ]

# --- audit ---
out=$("$PORTCULLIS" run --audit --name l4-j --policy "$POL" -- "${CURL[@]}" "http://$UP4:9999/audit") || true
check "--audit lets a would-be denial pass" [ "$out" = "ok GET /audit port 9999" ]
"$PORTCULLIS" run --audit --name l4-k --policy "$POL" -- "${CURL[@]}" "http://$UP_LL:8080/" >/dev/null 2>&1
check "--audit still blocks always-blocked addresses" [ $? -ne 0 ]

# --- plain HTTP on an L4 endpoint: its Host must agree (domain fronting) ---
out=$("$PORTCULLIS" run --name l4-host --policy "$POL" -- "${CURL[@]}" -H "Host: up.test" "http://$UP4:8080/named")
check "plain HTTP with the endpoint's Host passes" [ "$out" = "ok GET /named port 8080" ]
"$PORTCULLIS" run --name l4-front --policy "$POL" -- "${CURL[@]}" -H "Host: evil.test" "http://$UP4:8080/fronted" >/dev/null 2>&1
check "a Host that contradicts the destination is refused" [ $? -ne 0 ]
check "  nothing reached the upstream" [ "$(server_requests web4 'GET /fronted')" = 0 ]
out=$("$PORTCULLIS" run --name l4-banner --policy "$POL" -- python3 "$HELPERS/client.py" banner "$UP4" 2525)
check "a server-first protocol still works ($out)" [ "$out" = "220 banner ready|echo hello" ]
out=$("$PORTCULLIS" run --name l4-slow --policy "$POL" -- python3 "$HELPERS/rawhttp.py" "$UP4" 8080 \
    'GET /slow HTTP/1.1\r\n' 'Host: evil.test' 2>&1)
check "a head split across writes is still checked" [ "$(server_requests web4 'GET /slow')" = 0 ]
# A client that waits before speaking gets the upstream connected (it could
# be server-first), but its first bytes are checked all the same.
out=$("$PORTCULLIS" run --name l4-late --policy "$POL" -- python3 "$HELPERS/rawhttp.py" --delay 0.8 "$UP4" 8080 \
    'GET /late HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n' 2>&1)
check "a request sent after 0.8 s of silence passes ($(head -1 <<<"$out" | tr -d '\r'))" \
    [ "$(server_requests web4 'GET /late')" = 1 ]
"$PORTCULLIS" run --name l4-latefront --policy "$POL" -- python3 "$HELPERS/rawhttp.py" --delay 0.8 "$UP4" 8080 \
    'GET /latefront HTTP/1.1\r\nHost: evil.test\r\n\r\n' >/dev/null 2>&1
check "a contradicting Host sent after 0.8 s of silence is still refused" \
    [ "$(server_requests web4 'GET /latefront')" = 0 ]
check "  journal: host_mismatch" journal_find PORTCULLIS_SANDBOX=l4-latefront \
    PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=denied PORTCULLIS_REASON=host_mismatch
# Shapes a server still reads as that request: empty lines before it, a
# method split across writes, a target in absolute form (a server goes by
# its authority, not by Host).
raw_front() { # NAME BYTES...: sent from a sandbox NAME; the flow must be refused
    local name=$1
    shift
    "$PORTCULLIS" run --name "$name" --policy "$POL" -- python3 "$HELPERS/rawhttp.py" "$UP4" 8080 "$@" \
        >/dev/null 2>&1
    check "  journal: $name refused as host_mismatch" journal_find PORTCULLIS_SANDBOX="$name" \
        PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=denied PORTCULLIS_REASON=host_mismatch
}
raw_front l4-crlf '\r\n\r\nGET /crlf HTTP/1.1\r\nHost: evil.test\r\n\r\n'
raw_front l4-split 'G' 'ET /split HTTP/1.1\r\nHost: evil.test\r\n\r\n'
raw_front l4-abs 'GET http://evil.test/abs HTTP/1.1\r\nHost: up.test\r\n\r\n'
raw_front l4-absuser 'GET http://up.test@evil.test:8080/abs HTTP/1.1\r\nHost: up.test\r\n\r\n'
check "  none of them reached the upstream" \
    [ "$(($(server_requests web4 'GET /crlf') + $(server_requests web4 'GET /split') + $(server_requests web4 'GET http')))" = 0 ]
out=$("$PORTCULLIS" run --name l4-crlfok --policy "$POL" -- python3 "$HELPERS/rawhttp.py" "$UP4" 8080 \
    '\r\nGET /crlfok HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n' 2>&1)
check "a request after an empty line with the endpoint's Host passes" journal_find \
    PORTCULLIS_SANDBOX=l4-crlfok PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=allowed
out=$("$PORTCULLIS" run --name l4-absok --policy "$POL" -- python3 "$HELPERS/rawhttp.py" "$UP4" 8080 \
    'GET http://up.test:8080/absok HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n' 2>&1)
check "an absolute-form target naming the endpoint passes" journal_find \
    PORTCULLIS_SANDBOX=l4-absok PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=allowed
# Part of a head, then FIN: refused at once (it used to wake the loop over
# and over until the 3 s head deadline).
t0=$(date +%s%N)
"$PORTCULLIS" run --name l4-half --policy "$POL" -- python3 "$HELPERS/rawhttp.py" --shut "$UP4" 8080 \
    'GET /half HTTP/1.1\r\nHo' >/dev/null 2>&1
ms=$((($(date +%s%N) - t0) / 1000000))
check "a head cut short by FIN is refused as incomplete" journal_find PORTCULLIS_SANDBOX=l4-half \
    PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=denied PORTCULLIS_REASON=http_head_incomplete
check "  without waiting for the head deadline (${ms} ms for the whole run)" [ "$ms" -lt 2800 ]

# --- an inspected endpoint: requests are decided one by one ---
POL7="$T_DIR/policy-l7.yaml"
write_policy "$POL7" <<'YAML'
version: 1
network_policies:
  rest_api:
    endpoints:
      - host: up.test
        port: 8080
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        access: read-only
YAML
out=$("$PORTCULLIS" run --name l4-l7 --policy "$POL7" -- "${CURL[@]}" "http://$UP4:8080/l7")
check "protocol: rest: a GET to the literal address passes inspection" [ "$out" = "ok GET /l7 port 8080" ]
before=$(server_requests web4 "POST")
"$PORTCULLIS" run --name l4-l7b --policy "$POL7" -- "${CURL[@]}" -f -X POST -d a=b "http://$UP4:8080/l7" >/dev/null 2>&1
check "  and a POST does not" [ $? -ne 0 ]
check "  nothing of it reached the upstream" [ "$(server_requests web4 "POST")" = "$before" ]

# --- journal ---
e=$(journal_find PORTCULLIS_SANDBOX=l4-a PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=allowed \
    PORTCULLIS_POLICY=upstream_web PORTCULLIS_PROTO=tcp PORTCULLIS_DST_IP=$UP4 \
    PORTCULLIS_DST_PORT=8080 PORTCULLIS_SEVERITY=info PRIORITY=6 OCSF_CLASS_UID=4001 \
    PORTCULLIS_EXE=/usr/bin/curl)
check "journal: allowed flow with its fields" [ -n "$e" ]
e=$(journal_find PORTCULLIS_SANDBOX=l4-d PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=no_matching_policy PORTCULLIS_POLICY= PORTCULLIS_DST_IP=$UP4 \
    PORTCULLIS_DST_PORT=9999 PORTCULLIS_SEVERITY=medium PRIORITY=4 PORTCULLIS_EXE=/usr/bin/curl)
check "journal: denied flow with reason no_matching_policy" [ -n "$e" ]
check "journal: denial names the process" python3 -c '
import json,sys; e=json.loads(sys.argv[1]); m=e["MESSAGE"]
assert int(e["PORTCULLIS_PID"]) > 1, e
assert m.startswith("NET:OPEN [MED] DENIED curl(" + e["PORTCULLIS_PID"] + ") -> 198.18.0.10:9999 [policy:- reason:no_matching_policy"), m
json.loads(e["OCSF_JSON"])' "${e:-{\}}"
check "journal: private_address names the policy" journal_find PORTCULLIS_SANDBOX=l4-f \
    PORTCULLIS_ACTION=denied PORTCULLIS_REASON=private_address PORTCULLIS_POLICY=private_no_ips
check "journal: always_blocked_address" journal_find PORTCULLIS_SANDBOX=l4-g \
    PORTCULLIS_ACTION=denied PORTCULLIS_REASON=always_blocked_address PORTCULLIS_DST_IP=$UP_LL
check "journal: IPv6 denial" journal_find PORTCULLIS_SANDBOX=l4-i PORTCULLIS_ACTION=denied \
    PORTCULLIS_DST_IP=$UP6 PORTCULLIS_DST_PORT=9999
check "journal: audit entry" journal_find PORTCULLIS_SANDBOX=l4-j PORTCULLIS_ACTION=audit \
    PORTCULLIS_REASON=no_matching_policy PORTCULLIS_DST_PORT=9999
check "journal: host_mismatch finding and denial" journal_find PORTCULLIS_SANDBOX=l4-front \
    PORTCULLIS_EVENT=FINDING:HOST_MISMATCH PORTCULLIS_REASON=host_mismatch PRIORITY=3
check "journal: the flow itself denied as host_mismatch" journal_find PORTCULLIS_SANDBOX=l4-front \
    PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_ACTION=denied PORTCULLIS_REASON=host_mismatch
check "journal: the inspected GET" journal_find PORTCULLIS_SANDBOX=l4-l7 \
    PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_ACTION=allowed PORTCULLIS_POLICY=rest_api
check "journal: audit mode keeps always-blocked denied" journal_find PORTCULLIS_SANDBOX=l4-k \
    PORTCULLIS_ACTION=denied PORTCULLIS_REASON=always_blocked_address

# --- portcullis events ---
out=$("$PORTCULLIS" events --since "$T_START" --sandbox l4-d --denied --json)
check "events --json: the denial, with lower-case keys" python3 -c '
import json,sys
rows=[json.loads(l) for l in sys.argv[1].splitlines()]
assert len(rows)==1, rows
r=rows[0]
assert r["sandbox"]=="l4-d" and r["action"]=="denied" and r["reason"]=="no_matching_policy", r
assert r["dst_ip"]=="198.18.0.10" and r["dst_port"]==9999 and r["proto"]=="tcp", r
assert r["event"]=="NET:OPEN" and r["severity"]=="medium" and "time" in r and "message" in r, r
assert r["ocsf"]["class_uid"]==4001, r' "$out"
out=$("$PORTCULLIS" events --since "$T_START" --sandbox l4-a --denied --json)
check "events --denied leaves out allowed flows" [ -z "$out" ]
out=$("$PORTCULLIS" events --since "$T_START" --sandbox l4-d)
check "events table shows the denial" grep -qi "denied" <<<"$out"
check "JSONL sink has the denial" grep -q '"sandbox":"l4-d"' "$T_DIR/events.jsonl"
