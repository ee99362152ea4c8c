#!/bin/bash
# TLS (issue 4): passthrough decided on the SNI without decrypting (the client
# sees the upstream's own certificate; a missing or contradicting SNI is
# host_mismatch; plain bytes on a `tls: passthrough` endpoint are refused);
# terminate with the daemon's CA in the sandbox trust store (plain curl and
# Python work with no CA flags), HTTP rules on the decrypted requests (403
# JSON), wss relayed after the 101, an upstream leg that verifies the
# server's certificate and name against the system roots plus --upstream-ca.
#
# Every case runs in its own sandbox (portcullis run --name tls-XX), so each
# journal check is tied to its case by PORTCULLIS_SANDBOX.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls_lib.sh"
require_root
ensure_journal
setup_upstream
tls_make_certs

# Passthrough upstreams: their own certificates, from the test CA.
start_tls_server up9443 9443 up --bind "$UP4" --bind "$UP6"
start_tls_server other9443 9443 other --bind "$UP4B"
start_tls_server raw9444 9444 up --raw-echo
# Terminated upstreams.
start_tls_server up8443 8443 up --bind "$UP4" --bind "$UP6"
start_tls_server evil8444 8444 evil           # signed by a CA nobody trusts
start_tls_server wrongname8446 8446 other     # valid chain, names other.test
start_tls_server term8447 8447 up             # `tls: terminate` without HTTP rules
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  tls_pass:
    endpoints:
      - host: up.test
        port: 9443
        allowed_ips: ["198.18.0.0/24", "2001:db8::/64"]
      - host: other.test
        port: 9443
        allowed_ips: ["198.18.0.0/24"]
      - host: up.test
        port: 9444
        tls: passthrough
        allowed_ips: ["198.18.0.0/24"]
  tls_rest:
    endpoints:
      - host: up.test
        ports: [8443, 8444, 8446]
        allowed_ips: ["198.18.0.0/24", "2001:db8::/64"]
        protocol: rest
        access: read-only
      - host: other.test
        port: 8443
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        access: read-only
      - host: up.test
        port: 8447
        tls: terminate
        allowed_ips: ["198.18.0.0/24"]
YAML
"$PORTCULLIS" policy check "$POL" >/dev/null || die "policy check failed"

TESTCA="$T_DIR/testca.pem"
TLSPY="$HELPERS/tlsupstream.py"
CURL=(curl -sS -m 5 --noproxy '*')
# sb NAME CMD...: CMD in a fresh sandbox tls-NAME with the policy, trusting
# the test CA upstream (as a user would for a private registry).
sb() {
    local n=$1
    shift
    "$PORTCULLIS" run --name "tls-$n" --upstream-ca "$TESTCA" --policy "$POL" -- "$@"
}
mark_journal

# ---------------------------------------------------------------- (a) passthrough allowed by SNI
out=$(sb a1 "${CURL[@]}" --cacert "$TESTCA" --resolve "up.test:9443:$UP4" https://up.test:9443/pass)
check "passthrough: curl --cacert testca reaches the upstream ($out)" [ "$out" = "ok up9443 GET /pass port 9443" ]
check "  the upstream got the client's own SNI and Host" tls_log_has up9443 "^REQUEST GET /pass host=up.test:9443 sni=up.test "
out=$(sb a2 python3 "$TLSPY" client "$UP4" 9443 --sni up.test --cafile "$TESTCA" --get /py)
check "passthrough: a Python TLS client sees the upstream's own certificate ($(head -1 <<<"$out"))" \
    grep -qx "handshake ok .* issuer=$TLS_TEST_CA_CN subject=up.test" <<<"$out"
check "  and gets its answer" grep -qx "ok up9443 GET /py port 9443" <<<"$out"
out=$(sb a3 sh -c "openssl s_client -connect $UP4:9443 -servername up.test -verify_hostname up.test \
    -verify_return_error -CAfile $TESTCA </dev/null 2>&1; echo exit=\$?")
check "passthrough: openssl s_client verifies the upstream's chain and name" \
    grep -qx "exit=0" <<<"$out"
check "  issued by the test CA, not the portcullis CA" grep -q "^issuer=.*CN = $TLS_TEST_CA_CN\$" <<<"$out"
out=$(sb a4 "${CURL[@]}" --cacert "$TESTCA" --resolve "up.test:9443:[$UP6]" https://up.test:9443/pass6)
check "passthrough over IPv6 ($out)" [ "$out" = "ok up9443 GET /pass6 port 9443" ]
sb a5 "${CURL[@]}" --resolve "up.test:9443:$UP4" https://up.test:9443/untrusted >/dev/null 2>&1
rc=$?
check "passthrough: without --cacert curl rejects the upstream's certificate (rc $rc, not decrypted)" [ "$rc" = 60 ]
out=$(sb a6 python3 "$HELPERS/ws.py" client "$UP4" 9443 up.test:9443 3 --tls --cafile "$TESTCA")
check "passthrough: wss echo ($out)" [ "$out" = "ok 6" ]
out=$(sb a7 "${CURL[@]}" --cacert "$TESTCA" --resolve "other.test:9443:$UP4B" https://other.test:9443/o)
check "passthrough: another allowed host at its own address ($out)" [ "$out" = "ok other9443 GET /o port 9443" ]
out=$(sb a8 python3 "$TLSPY" client "$UP4" 9444 --sni up.test --cafile "$TESTCA" --echo "raw bytes through")
check "tls: passthrough endpoint: a TLS client's bytes echo ($(tr '\n' ' ' <<<"$out"))" grep -qx "echo ok" <<<"$out"
check "journal: passthrough allow names the host from the SNI" journal_find PORTCULLIS_SANDBOX=tls-a1 \
    PORTCULLIS_ACTION=allowed PORTCULLIS_DST_HOST=up.test PORTCULLIS_DST_IP="$UP4" PORTCULLIS_DST_PORT=9443 \
    PORTCULLIS_POLICY=tls_pass PORTCULLIS_PROTO=tcp
check "journal: IPv6 passthrough allow" journal_find PORTCULLIS_SANDBOX=tls-a4 \
    PORTCULLIS_ACTION=allowed PORTCULLIS_DST_HOST=up.test PORTCULLIS_DST_IP="$UP6" PORTCULLIS_DST_PORT=9443

out=$(sb a9 python3 "$TLSPY" client "$UP4" 9443 --sni up.test --cafile "$TESTCA" --split-hello 100 --get /split)
check "passthrough: a ClientHello in 100-byte segments, 100 ms apart, is still decided ($(head -1 <<<"$out"))" \
    grep -qx "ok up9443 GET /split port 9443" <<<"$out"
before=$(server_connects up9443)
out=$(sb a10 python3 "$TLSPY" client "$UP4" 9443 --sni other.test --cafile "$TESTCA" --split-hello 100 --get /split)
check "  and one for the wrong name, split the same way, is refused ($(head -1 <<<"$out"))" \
    [ "$(server_connects up9443)" = "$before" ]
# 7 bytes every 100 ms: the hello takes longer than the 3 s the peek waits.
out=$(sb a11 python3 "$TLSPY" client "$UP4" 9443 --sni up.test --cafile "$TESTCA" --split-hello 7 --get /slow)
check "  a ClientHello trickled over more than 3 s is refused ($(head -1 <<<"$out"))" \
    [ "$(server_connects up9443)" = "$before" ]
check "  journal: tls_hello_incomplete" journal_find PORTCULLIS_SANDBOX=tls-a11 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=tls_hello_incomplete
# A client silent past the first-byte wait (as if server-first) is checked
# when its ClientHello comes.
out=$(sb a12 python3 "$TLSPY" client "$UP4" 9443 --sni up.test --cafile "$TESTCA" --delay 0.8 --get /late)
check "passthrough: a ClientHello after 0.8 s of silence is decided and passes ($(tail -1 <<<"$out"))" \
    grep -qx "ok up9443 GET /late port 9443" <<<"$out"
hellos=$(tls_hellos up9443)
out=$(sb a13 python3 "$TLSPY" client "$UP4" 9443 --sni other.test --cafile "$TESTCA" --delay 0.8 --get /latefront)
check "  one for another name after 0.8 s of silence is refused before a byte of it arrives ($(head -1 <<<"$out"))" \
    [ "$(tls_hellos up9443)" = "$hellos" ]
check "  journal: host_mismatch" journal_find PORTCULLIS_SANDBOX=tls-a13 PORTCULLIS_ACTION=denied \
    PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_REASON=host_mismatch

# ---------------------------------------------------------------- (b) passthrough denied by SNI
before=$(server_connects up9443)
sb b1 "${CURL[@]}" --cacert "$TESTCA" --resolve "other.test:9443:$UP4" https://other.test:9443/fronted >/dev/null 2>&1
rc=$?
# 60 would mean a certificate came back (the bytes were relayed).
check "passthrough: SNI other.test (itself allowed) sent to up.test's address is refused (rc $rc)" \
    test "$rc" -ne 0 -a "$rc" -ne 60
check "  nothing reached the upstream" [ "$(server_connects up9443)" = "$before" ]
check "  journal: denied, host_mismatch" journal_find PORTCULLIS_SANDBOX=tls-b1 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=host_mismatch PORTCULLIS_DST_IP="$UP4" PORTCULLIS_DST_PORT=9443
check "  journal: FINDING:HOST_MISMATCH" journal_find PORTCULLIS_SANDBOX=tls-b1 \
    PORTCULLIS_EVENT=FINDING:HOST_MISMATCH PORTCULLIS_REASON=host_mismatch
out=$(sb b2 sh -c "openssl s_client -connect $UP4:9443 -noservername -CAfile $TESTCA </dev/null 2>&1")
check "passthrough: a ClientHello without SNI is refused" grep -q "no peer certificate available" <<<"$out"
check "  nothing reached the upstream" [ "$(server_connects up9443)" = "$before" ]
check "  journal: host_mismatch" journal_find PORTCULLIS_SANDBOX=tls-b2 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=host_mismatch PORTCULLIS_DST_PORT=9443
out=$(sb b3 sh -c "openssl s_client -connect $UP4:9443 -servername evil.test </dev/null 2>&1")
check "passthrough: an SNI outside the policy is refused" grep -q "no peer certificate available" <<<"$out"
check "  nothing reached the upstream" [ "$(server_connects up9443)" = "$before" ]
check "  journal: host_mismatch" journal_find PORTCULLIS_SANDBOX=tls-b3 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=host_mismatch PORTCULLIS_DST_PORT=9443

# ---------------------------------------------------------------- (c) terminate, HTTP rules
out=$("$PORTCULLIS" run --name tls-c1 --upstream-ca "$TESTCA" --policy "$POL" -- \
    "${CURL[@]}" --resolve "up.test:8443:$UP4" https://up.test:8443/x)
check "terminate: plain curl, no CA flags, gets the upstream's answer ($out)" [ "$out" = "ok up8443 GET /x port 8443" ]
check "  the daemon's upstream leg sent SNI up.test" tls_log_has up8443 "^REQUEST GET /x host=up.test:8443 sni=up.test "
PCL_CA="$PORTCULLIS_CA_DIR/ca.crt"
check "the daemon created its CA in \$PORTCULLIS_CA_DIR" test -s "$PCL_CA" -a -s "$PORTCULLIS_CA_DIR/ca.key"
PCL_CA_CN=$(cert_cn "$PCL_CA" 2>/dev/null)
PCL_CA_CN=${PCL_CA_CN:-portcullis interception CA}
check "  its key is root's alone" [ "$(stat -c %a:%u "$PORTCULLIS_CA_DIR/ca.key" 2>/dev/null)" = "600:0" ]

out=$(sb c2 "${CURL[@]}" -i -X POST -d x=1 --resolve "up.test:8443:$UP4" https://up.test:8443/post)
check "terminate: POST on a read-only endpoint gets a 403" grep -q "^HTTP/1.1 403" <<<"$out"
check "  with a JSON body: policy_denied" grep -q '"error":"policy_denied"' <<<"$out"
check "  the POST never reached the upstream" [ "$(server_requests up8443 POST)" = 0 ]
check "  journal: HTTP:POST denied by an L7 rule" journal_find PORTCULLIS_SANDBOX=tls-c2 \
    PORTCULLIS_EVENT=HTTP:POST PORTCULLIS_ACTION=denied PORTCULLIS_REASON=l7_rule PORTCULLIS_HTTP_PATH=/post
hs=$(tls_handshakes up8443)
out=$(sb c3 "${CURL[@]}" --resolve "up.test:8443:$UP4" https://up.test:8443/k1 --next -X DELETE \
    --resolve "up.test:8443:$UP4" https://up.test:8443/k2)
check "terminate, keep-alive: the GET is answered" grep -q "^ok up8443 GET /k1 port 8443" <<<"$out"
check "  the DELETE behind it gets policy_denied" grep -q '"error":"policy_denied"' <<<"$out"
check "  and never reached the upstream" [ "$(server_requests up8443 DELETE)" = 0 ]
check "  one upstream handshake for the connection" [ "$(tls_handshakes up8443)" = $((hs + 1)) ]

out=$(sb c4 python3 "$TLSPY" client "$UP4" 8443 --sni up.test --get /cert)
check "terminate: the client sees a leaf for up.test from the portcullis CA ($(head -1 <<<"$out"))" \
    grep -qx "handshake ok .* issuer=$PCL_CA_CN subject=up.test" <<<"$out"
check "  (Python's default context, through SSL_CERT_FILE) and the answer" grep -qx "ok up8443 GET /cert port 8443" <<<"$out"
out=$(sb c5 "${CURL[@]}" -v --resolve "up.test:8443:$UP4" https://up.test:8443/v 2>&1)
check "terminate: curl -v shows the portcullis CA as issuer" grep -q "issuer:.*CN *= *$PCL_CA_CN" <<<"$out"
out=$(sb c6 python3 -c '
import socket, sys, urllib.request
real = socket.getaddrinfo
socket.getaddrinfo = lambda h, *a, **k: real(sys.argv[2] if h == "up.test" else h, *a, **k)
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end="")
except Exception as e:
    print("error: %s" % e)' https://up.test:8443/urllib "$UP4" 2>&1)
check "terminate: Python urllib with the default context ($out)" [ "$out" = "ok up8443 GET /urllib port 8443" ]
out=$(sb c7 env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u REQUESTS_CA_BUNDLE \
    "${CURL[@]}" --resolve "up.test:8443:$UP4" https://up.test:8443/store 2>&1)
check "terminate: curl trusts the CA through the sandbox trust store, no variables ($out)" \
    [ "$out" = "ok up8443 GET /store port 8443" ]
CA_LINE=$(sed -n 3p "$PCL_CA" 2>/dev/null)
out=$(sb c8 sh -c 'for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS GIT_SSL_CAINFO; do
        eval "f=\${$v:-}"
        if [ -n "$f" ] && [ -r "$f" ] && grep -qF -- "$1" "$f"; then echo "$v ok"; else echo "$v missing ($f)"; fi
    done
    cat "$2" >/dev/null 2>&1 && echo "key readable"' sh "${CA_LINE:-no CA}" "$PORTCULLIS_CA_DIR/ca.key")
check "the command's CA variables all name a bundle with the portcullis CA ($(tr '\n' ' ' <<<"$out"))" \
    [ "$(grep -c ' ok$' <<<"$out")" = 5 ]
check "  the CA key cannot be read inside the sandbox" bash -c '! grep -q "key readable" <<<"$1"' _ "$out"
out=$(sb c9 "${CURL[@]}" --resolve "up.test:8443:[$UP6]" https://up.test:8443/v6)
check "terminate over IPv6 ($out)" [ "$out" = "ok up8443 GET /v6 port 8443" ]
out=$(sb c10 "${CURL[@]}" -X POST -d y=2 --resolve "up.test:8447:$UP4" https://up.test:8447/any)
check "tls: terminate without HTTP rules: any method passes ($out)" [ "$out" = "ok term8447 POST /any port 8447" ]
out=$(sb c11 python3 "$TLSPY" client "$UP4" 8447 --sni up.test --get /t)
check "  and the client sees the portcullis CA" grep -qx "handshake ok .* issuer=$PCL_CA_CN subject=up.test" <<<"$out"
# Without --upstream-ca the test CA is not trusted upstream: the flow is refused.
out=$("$PORTCULLIS" run --name tls-c12 --policy "$POL" -- \
    "${CURL[@]}" --resolve "up.test:8443:$UP4" https://up.test:8443/noca 2>&1)
check "terminate without --upstream-ca: the test CA is not trusted upstream ($out)" [ "$out" != "ok up8443 GET /noca port 8443" ]
check "  nothing of the request reached the upstream" [ "$(server_requests up8443 'GET /noca')" = 0 ]
check "  journal: denied, verification" journal_grep 'verif' PORTCULLIS_SANDBOX=tls-c12 PORTCULLIS_ACTION=denied
check "journal: the terminated GET, allowed, with host and path" journal_find PORTCULLIS_SANDBOX=tls-c1 \
    PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_ACTION=allowed PORTCULLIS_DST_HOST=up.test PORTCULLIS_HTTP_PATH=/x \
    PORTCULLIS_POLICY=tls_rest PORTCULLIS_DST_PORT=8443

# ---------------------------------------------------------------- (d) wss through terminate
out=$(sb d1 python3 "$HELPERS/ws.py" client "$UP4" 8443 up.test:8443 5 --tls)
check "terminate: wss echo, 5 text and 5 binary frames each way ($out)" [ "$out" = "ok 10" ]
check "  the upstream saw them all" [ "$(grep -c '^WS op=1 ' "$T_DIR/up8443.log"):$(grep -c '^WS op=2 ' "$T_DIR/up8443.log")" = 5:5 ]
check "  journal: the upgrade" journal_find PORTCULLIS_SANDBOX=tls-d1 PORTCULLIS_EVENT=HTTP:UPGRADE

# ---------------------------------------------------------------- (e) upstream verification
out=$(sb e1 "${CURL[@]}" --resolve "up.test:8444:$UP4" https://up.test:8444/evil 2>&1)
rc=$?
check "an upstream certificate from an untrusted CA: curl fails (rc $rc)" [ "$rc" -ne 0 ]
check "  with a TLS alert ($out)" grep -qi "alert" <<<"$out"
check "  nothing of the request reached the upstream" [ "$(server_requests evil8444 '')" = 0 ]
check "  journal: TLS:HANDSHAKE denied, upstream_verify_failed, high" journal_find PORTCULLIS_SANDBOX=tls-e1 \
    PORTCULLIS_EVENT=TLS:HANDSHAKE PORTCULLIS_ACTION=denied PORTCULLIS_REASON=upstream_verify_failed \
    PORTCULLIS_SEVERITY=high PORTCULLIS_DST_HOST=up.test PORTCULLIS_DST_PORT=8444
check "  and says why in words" journal_grep 'certificate verify failed' PORTCULLIS_SANDBOX=tls-e1 \
    PORTCULLIS_EVENT=TLS:HANDSHAKE
out=$(sb e2 "${CURL[@]}" --resolve "up.test:8446:$UP4" https://up.test:8446/name 2>&1)
rc=$?
check "an upstream certificate for another name: curl fails (rc $rc)" [ "$rc" -ne 0 ]
check "  nothing of the request reached the upstream" [ "$(server_requests wrongname8446 '')" = 0 ]
check "  journal: denied, verification" journal_grep 'verif' \
    PORTCULLIS_SANDBOX=tls-e2 PORTCULLIS_ACTION=denied PORTCULLIS_DST_PORT=8446

# ---------------------------------------------------------------- (f) SNI/address mismatch on terminate
before=$(server_connects up8443)
sb f1 "${CURL[@]}" --resolve "other.test:8443:$UP4" https://other.test:8443/f >/dev/null 2>&1
check "terminate: SNI other.test (itself allowed) sent to up.test's address is refused" [ $? -ne 0 ]
check "  nothing reached the upstream" [ "$(server_connects up8443)" = "$before" ]
check "  journal: host_mismatch" journal_find PORTCULLIS_SANDBOX=tls-f1 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=host_mismatch PORTCULLIS_DST_PORT=8443

# ---------------------------------------------------------------- (g) plain bytes on tls: passthrough
before=$(server_connects raw9444)
out=$(sb g1 "${CURL[@]}" --resolve "up.test:9444:$UP4" http://up.test:9444/plain 2>&1)
rc=$?
check "tls: passthrough endpoint: plain HTTP is refused (rc $rc)" [ "$rc" -ne 0 ]
check "  nothing reached the upstream" [ "$(server_connects raw9444)" = "$before" ]
check "  journal: denied, not_tls" journal_find PORTCULLIS_SANDBOX=tls-g1 PORTCULLIS_ACTION=denied \
    PORTCULLIS_REASON=not_tls PORTCULLIS_DST_PORT=9444
