#!/usr/bin/python3
"""TLS test upstream (and a TLS test client) for portcullis integration tests.
Stdlib only.

Server (runs inside the test's upstream namespace):

  tlsupstream.py --bind A [--bind B ...] --port P --cert PEM --key PEM
                 [--name NAME] [--log FILE] [--raw-echo] [--alpn LIST] [--root DIR]

  Listens on every --bind address (IPv4 or IPv6), does the TLS handshake
  (TLS 1.2 and 1.3, ALPN from --alpn, default "http/1.1"; "" selects none),
  then either
    - (default) HTTP/1.1 with keep-alive: any method; the answer is 200 with
      the body "ok NAME METHOD PATH port P\\n" (request bodies, by
      Content-Length or chunked, are read and counted); "GET /ws" with
      "Upgrade: websocket" gets a 101 and an echo of every frame (text,
      binary, continuation; ping gets pong) until a close frame; with
      --root, GET and HEAD get the file at PATH under DIR instead (a
      directory's index.html; 404 when there is none);
    - (--raw-echo) echoes every byte until EOF.
  Prints "ready" on stdout once every address listens.  Appends to --log,
  one line each, written before anything is answered (so a client that got
  its answer can count on the line being there):
    CONNECT <peer>                                  TCP accepted
    HELLO sni=<name|->                              a ClientHello arrived
    HANDSHAKE <peer> sni=<name|-> alpn=<proto|-> version=<v>
    TLSERR <peer> <reason>                          handshake failed
    REQUEST <METHOD> <PATH> host=<Host|-> sni=<name|-> len=<body bytes>
    WS op=<opcode> len=<n>                          a WebSocket frame echoed
    ECHO <n> sni=<name|->                           raw bytes echoed
  (CONNECT and REQUEST match upstream.py's lines, so lib.sh's
  server_connects / server_requests count them the same way.)

Client (runs inside a sandbox; one result per line on stdout, exit 0 only
when everything asked for worked):

  tlsupstream.py client HOST PORT [--sni NAME | --no-sni] [--cafile PEM]
                 [--alpn LIST] [--get PATH] [--post PATH --data TEXT]
                 [--host-header H] [--echo TEXT]

  Connects to HOST (an address) PORT and does a verifying TLS handshake:
  against --cafile, or the default trust (ssl.create_default_context(), which
  honours SSL_CERT_FILE).  SNI is --sni (default: HOST, which Python does not
  send when it is an address literal); the certificate must name it.
  --no-sni sends none and checks only the chain.  Prints
    handshake ok version=<v> alpn=<proto|-> issuer=<issuer CN> subject=<subject CN>
  then for --get/--post the status line and the body, for --echo "echo ok".
  On failure prints "error: <what>" and exits 1.
"""
import argparse
import base64
import hashlib
import os
import socket
import ssl
import time
import struct
import sys
import threading

LOCK = threading.Lock()
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def log(path, line):
    if not path:
        return
    with LOCK, open(path, "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------- server


class Conn:
    """A TLS socket with a read buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def read_until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("head too large")
            self.fill()
        i = self.buf.index(sep) + len(sep)
        d, self.buf = self.buf[:i], self.buf[i:]
        return d

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d


def read_body(c, headers):
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        body = b""
        while True:
            line = c.read_until(b"\r\n").strip()
            n = int(line.split(b";")[0], 16)
            if n == 0:
                # trailers up to an empty line
                while c.read_until(b"\r\n") != b"\r\n":
                    pass
                return body
            body += c.read_exact(n)
            c.read_exact(2)
    n = int(headers.get("content-length", "0") or "0")
    return c.read_exact(n)


def ws_frame(op, data):
    n = len(data)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + data


def ws_echo(c, a):
    while True:
        h = c.read_exact(2)
        fin_op = h[0]
        op = fin_op & 0x0F
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", c.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", c.read_exact(8))[0]
        mask = c.read_exact(4) if h[1] & 0x80 else None
        data = c.read_exact(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        log(a.log, "WS op=%d len=%d" % (op, n))
        if op == 8:
            c.sock.sendall(ws_frame(8, data[:2]))
            return
        if op == 9:
            c.sock.sendall(ws_frame(10, data))
            continue
        if op == 10:
            continue
        # echo with the same FIN bit and opcode (continuations stay continuations)
        out = ws_frame(op, data)
        c.sock.sendall(bytes([fin_op & 0x80 | op]) + out[1:])


def serve_http(c, a, sni, alpn):
    while True:
        try:
            head = c.read_until(b"\r\n\r\n")
        except EOFError:
            return
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = read_body(c, headers)
        host = headers.get("host", "-")
        log(a.log, "REQUEST %s %s host=%s sni=%s alpn=%s len=%d"
            % (method, path, host, sni or "-", alpn or "-", len(body)))
        conn_hdr = headers.get("connection", "").lower()
        if (method == "GET" and path.split("?")[0] == "/ws"
                and headers.get("upgrade", "").lower() == "websocket" and "upgrade" in conn_hdr):
            key = headers.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            c.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
            ws_echo(c, a)
            return
        close = "close" in conn_hdr or version == "HTTP/1.0"
        if a.root and method in ("GET", "HEAD"):
            serve_file(c, a, method, path, close)
            if close:
                return
            continue
        resp = ("ok %s %s %s port %d\n" % (a.name, method, path, a.port)).encode()
        c.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                       b"X-Upstream-Name: %s\r\nX-Upstream-SNI: %s\r\n%s\r\n%s"
                       % (len(resp), a.name.encode(), (sni or "-").encode(),
                          b"Connection: close\r\n" if close else b"", b"" if method == "HEAD" else resp))
        if close:
            return


CONTENT_TYPES = {".html": "text/html", ".txt": "text/plain", ".whl": "application/octet-stream"}


def serve_file(c, a, method, path, close):
    """A static file under --root (a directory's index.html), else 404."""
    rel = os.path.normpath(path.split("?")[0].lstrip("/"))
    full = os.path.join(a.root, rel) if rel != "." else a.root
    if os.path.isdir(full):
        full = os.path.join(full, "index.html")
    body, status = b"not found\n", "404 Not Found"
    ctype = "text/plain"
    if not rel.startswith("..") and os.path.isfile(full):
        with open(full, "rb") as f:
            body = f.read()
        status = "200 OK"
        ctype = CONTENT_TYPES.get(os.path.splitext(full)[1], "application/octet-stream")
    c.sock.sendall(("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                    % (status, ctype, len(body), "Connection: close\r\n" if close else "")).encode()
                   + (b"" if method == "HEAD" else body))


def serve_raw(c, a, sni):
    while True:
        d = c.sock.recv(65536)
        if not d:
            return
        log(a.log, "ECHO %d sni=%s" % (len(d), sni or "-"))
        c.sock.sendall(d)


def handle(raw, peer, ctx, a):
    log(a.log, "CONNECT %s" % peer[0])
    raw.settimeout(30)
    try:
        tls = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log(a.log, "TLSERR %s %s" % (peer[0], getattr(e, "reason", None) or e))
            return
        sni = getattr(tls, "pcl_sni", None)
        alpn = tls.selected_alpn_protocol()
        log(a.log, "HANDSHAKE %s sni=%s alpn=%s version=%s" % (peer[0], sni or "-", alpn or "-", tls.version()))
        c = Conn(tls)
        try:
            if a.raw_echo:
                serve_raw(c, a, sni)
            else:
                serve_http(c, a, sni, alpn)
        except (EOFError, ValueError, ssl.SSLError, OSError):
            pass
        try:
            tls.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass
    finally:
        try:
            raw.close()
        except OSError:
            pass


def server_context(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn.split(","))

    def on_sni(sock, name, _ctx):
        log(a.log, "HELLO sni=%s" % (name or "-"))  # a ClientHello arrived
        try:
            sock.pcl_sni = name
        except AttributeError:
            pass
        return None

    ctx.sni_callback = on_sni
    return ctx


def serve(a):
    ctx = server_context(a)
    listeners = []
    for addr in a.bind:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, a.port))
        s.listen(512)
        listeners.append(s)

    def accept_loop(s):
        while True:
            raw, peer = s.accept()
            threading.Thread(target=handle, args=(raw, peer, ctx, a), daemon=True).start()

    ts = [threading.Thread(target=accept_loop, args=(s,), daemon=True) for s in listeners]
    for t in ts:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for t in ts:
        t.join()


# ---------------------------------------------------------------- client


def cn(name):
    for rdn in name or ():
        for k, v in rdn:
            if k == "commonName":
                return v
    return "-"


def split_hello_client(a):
    """A GET whose ClientHello reaches the proxy in several TCP segments."""
    try:
        ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])
        fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
        raw = socket.create_connection((a.host, a.port), timeout=a.timeout) if fam == socket.AF_INET \
            else socket.socket(fam, socket.SOCK_STREAM)
        if fam == socket.AF_INET6:
            raw.settimeout(a.timeout)
            raw.connect((a.host, a.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=a.sni or a.host)
        first = [True]

        def flush():
            data = out.read()
            if first[0] and data:
                first[0] = False
                for i in range(0, len(data), a.split_hello):
                    raw.sendall(data[i:i + a.split_hello])
                    time.sleep(0.1)
            elif data:
                raw.sendall(data)

        def fill():
            d = raw.recv(65536)
            if not d:
                raise ConnectionError("connection closed")
            inc.write(d)

        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                fill()
        flush()
        print("handshake ok split=%d issuer=%s" % (a.split_hello, cn(obj.getpeercert().get("issuer"))))
        obj.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                   % (a.get or "/", a.sni or a.host, a.port)).encode())
        flush()
        resp = b""
        while True:
            try:
                d = obj.read(65536)
                if not d:
                    break
                resp += d
            except ssl.SSLWantReadError:
                try:
                    fill()
                except ConnectionError:
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        head, _, body = resp.partition(b"\r\n\r\n")
        print(head.split(b"\r\n")[0].decode("latin-1"))
        sys.stdout.write(body.decode("latin-1"))
        return 0
    except (OSError, ssl.SSLError, ValueError) as e:
        print("error: %s" % e)
        return 1


def client(argv):
    p = argparse.ArgumentParser(prog="tlsupstream.py client")
    p.add_argument("host")
    p.add_argument("port", type=int)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sni")
    g.add_argument("--no-sni", action="store_true")
    p.add_argument("--cafile")
    p.add_argument("--alpn", default="http/1.1")
    p.add_argument("--get")
    p.add_argument("--post")
    p.add_argument("--data", default="")
    p.add_argument("--host-header")
    p.add_argument("--echo")
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--delay", type=float, default=0,
                   help="wait this many seconds after connecting before the ClientHello")
    p.add_argument("--split-hello", type=int, default=0,
                   help="send the ClientHello in pieces of N bytes, 100 ms apart (then --get)")
    a = p.parse_args(argv)
    if a.split_hello:
        return split_hello_client(a)
    try:
        ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl.create_default_context()
        if a.alpn:
            ctx.set_alpn_protocols(a.alpn.split(","))
        name = None if a.no_sni else (a.sni or a.host)
        if a.no_sni:
            ctx.check_hostname = False
        fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
        raw = socket.socket(fam, socket.SOCK_STREAM)
        raw.settimeout(a.timeout)
        raw.connect((a.host, a.port))
        time.sleep(a.delay)
        s = ctx.wrap_socket(raw, server_hostname=name)
        cert = s.getpeercert()
        print("handshake ok version=%s alpn=%s issuer=%s subject=%s"
              % (s.version(), s.selected_alpn_protocol() or "-", cn(cert.get("issuer")), cn(cert.get("subject"))))
        ok = True
        hosthdr = a.host_header or (a.sni or a.host) + ":%d" % a.port
        if a.get or a.post:
            if a.get:
                req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (a.get, hosthdr)
            else:
                req = ("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                       % (a.post, hosthdr, len(a.data.encode()), a.data))
            s.sendall(req.encode())
            resp = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    resp += d
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
            head, _, body = resp.partition(b"\r\n\r\n")
            status = head.split(b"\r\n")[0].decode("latin-1")
            print(status)
            sys.stdout.write(body.decode("latin-1"))
            ok = status.split(" ")[1:2] == ["200"]
        if a.echo is not None:
            msg = a.echo.encode()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(65536)
                if not d:
                    break
                got += d
            if got == msg:
                print("echo ok")
            else:
                print("echo mismatch: %r" % got)
                ok = False
        try:
            s.close()
        except OSError:
            pass
        return 0 if ok else 1
    except (OSError, ssl.SSLError, ValueError) as e:
        print("error: %s" % e)
        return 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        return client(sys.argv[2:])
    p = argparse.ArgumentParser()
    p.add_argument("--bind", action="append", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--name", default="tlsupstream")
    p.add_argument("--log")
    p.add_argument("--raw-echo", action="store_true")
    p.add_argument("--root", help="answer GET and HEAD with the files under this directory")
    p.add_argument("--alpn", default="http/1.1")
    a = p.parse_args()
    serve(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
