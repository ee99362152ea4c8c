#!/bin/bash
# Real clients through TLS termination, with no CA flag of any kind: git
# (clone over HTTPS), pip (download from a simple index), node (https.get),
# each finding the sandbox's CA through the trust store and variables
# `portcullis run` sets up.  The endpoint is read-only, so a git push (HTTP
# methods other than GET/HEAD/OPTIONS) is refused with 403 and never reaches
# the upstream.
#
# The sandbox has no DNS yet: each client is told where up.test is by its own
# means (git's http.curloptResolve, node's lookup option, a getaddrinfo
# wrapper for pip); TLS still goes by the name.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls_lib.sh"
require_root
ensure_journal
setup_upstream
tls_make_certs

# ---- what the upstream serves: a git repository, a package index, a file
ROOT="$T_DIR/www"
mkdir -p "$ROOT/simple/demo" "$ROOT/files"
echo "hello through portcullis" >"$ROOT/hello.txt"
(
    set -e
    export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@up.test GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@up.test
    git init -q -b main "$T_DIR/src"
    echo "content of the test repository" >"$T_DIR/src/README"
    git -C "$T_DIR/src" add README
    git -C "$T_DIR/src" commit -q -m "first"
    git clone -q --bare "$T_DIR/src" "$ROOT/repo.git"
    # The "dumb" HTTP protocol: plain files, GET only.
    git -C "$ROOT/repo.git" update-server-info
) || die "cannot make the test git repository"
/usr/bin/python3 - "$ROOT/files/demo-1.0-py3-none-any.whl" <<'PY' || die "cannot make the test wheel"
import sys, zipfile
files = {
    "demo/__init__.py": "VALUE = 42\n",
    "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["demo-1.0.dist-info/RECORD"] = "".join("%s,,\n" % n for n in files) + "demo-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
PY
cat >"$ROOT/simple/demo/index.html" <<'HTML'
<!DOCTYPE html>
<html><body><a href="../../files/demo-1.0-py3-none-any.whl">demo-1.0-py3-none-any.whl</a></body></html>
HTML
chmod -R a+rX "$T_DIR"
# Where the sandboxed commands (not root) write: HOME, the clone, downloads.
W="$T_DIR/work"
mkdir -p "$W"
chmod 1777 "$W"

start_tls_server www8443 8443 up --root "$ROOT"
start_daemon

POL="$T_DIR/policy.yaml"
write_policy "$POL" <<'YAML'
version: 1
network_policies:
  mirror_readonly:
    endpoints:
      - host: up.test
        port: 8443
        allowed_ips: ["198.18.0.0/24"]
        protocol: rest
        access: read-only
YAML
"$PORTCULLIS" policy check "$POL" >/dev/null || die "policy check failed"

# sb NAME CMD...: CMD in sandbox cl-NAME; the test CA is trusted only on the
# upstream leg (--upstream-ca), never by the client.
TESTCA="$T_DIR/testca.pem"
sb() {
    local n=$1
    shift
    "$PORTCULLIS" run --name "cl-$n" --upstream-ca "$TESTCA" --policy "$POL" -- "$@"
}
GIT=(git -c "http.curloptResolve=up.test:8443:$UP4")
# pip, with up.test resolved to the upstream's address.
PIP=(/usr/bin/python3 -c "import runpy, socket, sys
real = socket.getaddrinfo
socket.getaddrinfo = lambda h, *a, **k: real('$UP4' if h == 'up.test' else h, *a, **k)
sys.argv[0] = 'pip'
runpy.run_module('pip', run_name='__main__')")
# node's lookup option (with or without {all: true}).
NODE_LOOKUP="(h, o, cb) => (o && o.all ? cb(null, [{ address: '$UP4', family: 4 }]) : cb(null, '$UP4', 4))"
mark_journal

# ---------------------------------------------------------------- git
if command -v git >/dev/null; then
    out=$(sb git1 env HOME="$W" "${GIT[@]}" clone -q https://up.test:8443/repo.git "$W/clone" 2>&1)
    check "git clone over HTTPS through termination, no CA flag ($out)" \
        [ "$(cat "$W/clone/README" 2>/dev/null)" = "content of the test repository" ]
    check "  the upstream served the repository's refs" \
        [ "$(server_requests www8443 'GET /repo.git/info/refs')" -ge 1 ]
    check "  journal: HTTP:GET allowed for the refs" journal_find PORTCULLIS_SANDBOX=cl-git1 \
        PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_ACTION=allowed PORTCULLIS_HTTP_PATH=/repo.git/info/refs \
        PORTCULLIS_POLICY=mirror_readonly PORTCULLIS_DST_HOST=up.test
    check "  journal: the process is named (git's HTTPS helper)" journal_grep '' PORTCULLIS_SANDBOX=cl-git1 \
        PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_EXE="$(readlink -f "$(git --exec-path)/git-remote-https")"
    before=$(grep -c '^REQUEST' "$T_DIR/www8443.log")
    out=$(sb git2 env HOME="$W" GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t \
        GIT_COMMITTER_EMAIL=t@x sh -c 'cd "$1" && shift && echo more >>README && git commit -q -am second &&
        "$@" push -q origin main' sh "$W/clone" "${GIT[@]}" 2>&1)
    rc=$?
    check "git push to the read-only endpoint fails (rc $rc)" [ "$rc" -ne 0 ]
    check "  no request but GET/HEAD reached the upstream" \
        [ "$(sed -n "$((before + 1)),\$p" "$T_DIR/www8443.log" | grep '^REQUEST' | grep -cv '^REQUEST \(GET\|HEAD\) ')" = 0 ]
    check "  journal: a write method denied by the policy" journal_grep '' PORTCULLIS_SANDBOX=cl-git2 \
        PORTCULLIS_ACTION=denied PORTCULLIS_POLICY=mirror_readonly
else
    fail "git is not installed (packaging/test.sh installs it)"
fi

# ---------------------------------------------------------------- pip
if /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    out=$(sb pip1 env HOME="$W" PIP_CONFIG_FILE=/dev/null "${PIP[@]}" download \
        --no-cache-dir --no-deps --disable-pip-version-check -q \
        --index-url https://up.test:8443/simple/ -d "$W/pipout" demo 2>&1)
    check "pip downloads from an HTTPS index through termination, no CA flag ($(tail -1 <<<"$out"))" \
        cmp -s "$W/pipout/demo-1.0-py3-none-any.whl" "$ROOT/files/demo-1.0-py3-none-any.whl"
    check "  journal: HTTP:GET allowed for the index page" journal_find PORTCULLIS_SANDBOX=cl-pip1 \
        PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_ACTION=allowed PORTCULLIS_HTTP_PATH=/simple/demo/
    check "  journal: the process is named (python)" journal_grep '' PORTCULLIS_SANDBOX=cl-pip1 \
        PORTCULLIS_EVENT=NET:OPEN PORTCULLIS_EXE="$(readlink -f /usr/bin/python3)"
else
    fail "pip is not installed (packaging/test.sh installs python3-pip)"
fi

# ---------------------------------------------------------------- node
if command -v node >/dev/null; then
    out=$(sb node1 node -e '
        require("https").get("https://up.test:8443/hello.txt", { lookup: '"$NODE_LOOKUP"' }, (r) => {
            let b = "";
            r.on("data", (d) => (b += d));
            r.on("end", () => console.log(r.statusCode + " " + b.trim()));
        }).on("error", (e) => { console.log("error " + e.code + " " + e.message); process.exit(1); });' 2>&1)
    check "node https.get through termination, no CA flag ($out)" [ "$out" = "200 hello through portcullis" ]
    check "  journal: the process is named (node)" journal_grep '' PORTCULLIS_SANDBOX=cl-node1 \
        PORTCULLIS_EVENT=HTTP:GET PORTCULLIS_EXE="$(readlink -f "$(command -v node)")"
    out=$(sb node2 node -e '
        const r = require("https").request({ hostname: "up.test", port: 8443, path: "/hello.txt", method: "DELETE",
                                             lookup: '"$NODE_LOOKUP"' }, (r) => {
            let b = "";
            r.on("data", (d) => (b += d));
            r.on("end", () => console.log(r.statusCode + " " + r.headers["content-type"] + " " + JSON.parse(b).error));
        });
        r.on("error", (e) => console.log("error " + e.message));
        r.end();' 2>&1)
    check "  a DELETE gets the policy's 403 JSON ($out)" [ "$out" = "403 application/json policy_denied" ]
    check "  and never reaches the upstream" [ "$(server_requests www8443 'DELETE')" = 0 ]
else
    fail "node is not installed (packaging/test.sh installs nodejs)"
fi
