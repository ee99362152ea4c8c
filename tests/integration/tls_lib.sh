# shellcheck shell=bash
# TLS additions to lib.sh for the integration tests (sourced after lib.sh).
#
#   tls_make_certs          test CAs and server certificates in $T_DIR
#   start_tls_server ...    a helpers/tlsupstream.py server in the upstream
#                           namespace (recorded in T_PIDS, so cleanup kills it)
#   tls_handshakes NAME     TLS handshakes a server completed
#   tls_hellos NAME         ClientHellos a server received
#   journal_grep RE K=V...  a portcullisd journal entry matching loosely
#
# It also points PORTCULLIS_CA_DIR at $T_DIR/pclca.
#
# Files tls_make_certs writes (PEM; *.key are 0600, the rest 0644 so a
# sandboxed command running as nobody can read the CA certificates):
#   testca.pem  testca.key    "portcullis test CA" (EC P-256, CA:TRUE)
#   up.pem      up.key        up.test: DNS:up.test, IP:198.18.0.10, IP:2001:db8::10
#   other.pem   other.key     other.test: DNS:other.test, IP:198.18.0.11
#   evilca.pem  evilca.key    "portcullis evil CA", trusted by nobody
#   evil.pem    evil.key      up.test (same names as up.pem), signed by evilca

# The daemon's interception CA lives with the test, never in the machine's
# /var/lib/portcullis/ca (the daemon creates it there; the tool reads it).
export PORTCULLIS_CA_DIR="$T_DIR/pclca"

TLS_TEST_CA_CN="portcullis test CA"
TLS_EVIL_CA_CN="portcullis evil CA"

# _tls_ca BASE CN: a self-signed EC P-256 CA.
_tls_ca() {
    local base=$1 cn=$2
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T_DIR/$base.key" -out "$T_DIR/$base.pem" -days 3 -subj "/O=portcullis tests/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" >/dev/null 2>&1 || die "openssl: CA $base"
}

# _tls_leaf BASE CABASE CN SAN: an EC P-256 server certificate signed by CABASE.
_tls_leaf() {
    local base=$1 ca=$2 cn=$3 san=$4
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T_DIR/$base.key" -out "$T_DIR/$base.csr" -subj "/CN=$cn" >/dev/null 2>&1 ||
        die "openssl: request $base"
    cat >"$T_DIR/$base.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
EXT
    openssl x509 -req -in "$T_DIR/$base.csr" -CA "$T_DIR/$ca.pem" -CAkey "$T_DIR/$ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 2 -sha256 -extfile "$T_DIR/$base.ext" \
        -out "$T_DIR/$base.pem" >/dev/null 2>&1 || die "openssl: sign $base"
    rm -f "$T_DIR/$base.csr" "$T_DIR/$base.ext"
    openssl verify -CAfile "$T_DIR/$ca.pem" "$T_DIR/$base.pem" >/dev/null 2>&1 ||
        die "openssl: $base does not verify against $ca"
}

tls_make_certs() {
    _tls_ca testca "$TLS_TEST_CA_CN"
    _tls_leaf up testca up.test "DNS:up.test,IP:$UP4,IP:$UP6"
    _tls_leaf other testca other.test "DNS:other.test,IP:$UP4B"
    _tls_ca evilca "$TLS_EVIL_CA_CN"
    _tls_leaf evil evilca up.test "DNS:up.test,IP:$UP4,IP:$UP6"
    chmod 600 "$T_DIR"/*.key
    chmod 644 "$T_DIR"/*.pem
}

# start_tls_server NAME PORT CERT [--bind ADDR]... [--raw-echo] [--alpn LIST]:
# tlsupstream.py with $T_DIR/CERT.pem and CERT.key on every --bind address
# (default $UP4), logging to $T_DIR/NAME.log; its body names it NAME.
start_tls_server() {
    local name=$1 port=$2 cert=$3 binds=0 a
    shift 3
    for a in "$@"; do [ "$a" = --bind ] && binds=1; done
    [ "$binds" = 1 ] || set -- --bind "$UP4" "$@"
    : >"$T_DIR/$name.log"
    ip netns exec "$UP_NS" /usr/bin/python3 "$HELPERS/tlsupstream.py" --port "$port" \
        --cert "$T_DIR/$cert.pem" --key "$T_DIR/$cert.key" --name "$name" --log "$T_DIR/$name.log" "$@" \
        >"$T_DIR/$name.out" 2>&1 &
    T_PIDS+=($!)
    for _ in $(seq 100); do grep -q ready "$T_DIR/$name.out" 2>/dev/null && return 0; sleep 0.05; done
    die "TLS server $name did not start: $(cat "$T_DIR/$name.out")"
}

# Counts from a tlsupstream.py log (server_connects and server_requests of
# lib.sh work on it as well).
tls_handshakes() { grep -c '^HANDSHAKE' "$T_DIR/$1.log" || true; }
tls_hellos() { grep -c '^HELLO' "$T_DIR/$1.log" || true; }
tls_log_has() { grep -q -- "$2" "$T_DIR/$1.log"; }

# cert_cn PEM: the CN of a certificate's subject.
cert_cn() {
    openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed -n 's/^subject=.*CN=\([^,]*\).*/\1/p'
}

# journal_grep REGEX [KEY=VALUE...]: wait (10 s) for a portcullisd entry after
# the mark (mark_journal) with all those fields and some PORTCULLIS_* field or
# MESSAGE matching REGEX (case-insensitive); print it as JSON.  For checks that
# must not depend on an exact event name or reason spelling.
journal_grep() {
    local re=$1 deadline=$((SECONDS + 10)) out
    shift
    while [ $SECONDS -lt $deadline ]; do
        out=$(journalctl -o json --after-cursor="$JOURNAL_CURSOR" 2>/dev/null |
            python3 -c '
import json, re, sys
rx = re.compile(sys.argv[1], re.I)
want = [a.split("=", 1) for a in sys.argv[2:]]
def val(v):
    return v[0] if isinstance(v, list) else v
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if val(e.get("SYSLOG_IDENTIFIER")) != "portcullisd":
        continue
    if any(val(e.get(k)) != v for k, v in want):
        continue
    if any(isinstance(val(v), str) and rx.search(val(v)) for k, v in e.items()
           if k.startswith("PORTCULLIS_") or k == "MESSAGE"):
        print(json.dumps(e))
        sys.exit(0)
sys.exit(1)' "$re" "$@") && {
            echo "$out"
            return 0
        }
        sleep 0.2
    done
    return 1
}
