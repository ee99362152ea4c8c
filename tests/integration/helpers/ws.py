#!/usr/bin/python3
"""Minimal WebSocket (RFC 6455) peer for tests, stdlib only.

  ws.py server --bind A --port P [--first-frame] [--unsolicited]
      echo server; --first-frame: the 101 and a first frame ("hello") go out
      in one write; --unsolicited: answer every request with a 101, asked or not
      --cert PEM --key PEM: the same over TLS (wss)
  ws.py client HOST PORT HOSTHEADER N [--tls] [--sni NAME] [--cafile PEM]
      handshake, then N text and N binary frames of growing size; each echo
      must come back intact; prints "ok N" (and "first hello" if the server
      sent one)
      --tls: wss; the server certificate is verified against --cafile, or
      the default trust (which honours SSL_CERT_FILE), for --sni (default:
      HOSTHEADER without its port), which is also the SNI sent
"""
import argparse
import base64
import hashlib
import os
import socket
import socketserver
import ssl
import struct
import sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise ConnectionError("eof after %d of %d bytes" % (len(b), n))
        b += d
    return b


def read_frame(s):
    h = recv_exact(s, 2)
    op = h[0] & 0x0F
    masked = h[1] & 0x80
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if masked else None
    data = recv_exact(s, n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return op, data


def frame(op, data, mask):
    n = len(data)
    head = bytes([0x80 | op])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return head + data


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise ConnectionError("eof in head")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        a = self.server.args
        s = self.request
        if a.cert:
            try:
                s = self.server.tls.wrap_socket(s, server_side=True)
            except (ssl.SSLError, OSError):
                return
        try:
            head, rest = read_head(s)
        except (ConnectionError, ssl.SSLError, OSError):
            return
        with open(a.log, "a") as f:
            f.write("REQUEST %s\n" % head.split("\r\n")[0])
        key = ""
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "sec-websocket-key":
                key = v.strip()
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()
        if a.first_frame:
            resp += frame(1, b"hello", False)
        s.sendall(resp)
        while True:
            try:
                op, data = read_frame(s)
            except (ConnectionError, ssl.SSLError, OSError):
                return
            if op == 8:
                s.sendall(frame(8, b"", False))
                return
            s.sendall(frame(op, data, False))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def client(host, port, hosthdr, n, opts=()):
    p = argparse.ArgumentParser(prog="ws.py client HOST PORT HOSTHEADER N")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--sni")
    p.add_argument("--cafile")
    o = p.parse_args(list(opts))
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    if o.tls:
        ctx = ssl.create_default_context(cafile=o.cafile) if o.cafile else ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])
        sni = o.sni
        if not sni:  # the Host header without its port (and brackets)
            sni = hosthdr.rsplit("]", 1)[0].lstrip("[") if hosthdr.startswith("[") else hosthdr.split(":")[0]
        try:
            s = ctx.wrap_socket(s, server_hostname=sni)
        except (ssl.SSLError, OSError) as e:
            print("tls: %s" % e)
            return 1
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (hosthdr, key)).encode())
    head, rest = read_head(s)
    if not head.startswith("HTTP/1.1 101"):
        print("no 101: %s" % head.split("\r\n")[0])
        return 1

    class Buffered:
        def __init__(self, sock, pre):
            self.sock, self.pre = sock, pre

        def recv(self, k):
            if self.pre:
                d, self.pre = self.pre[:k], self.pre[k:]
                return d
            return self.sock.recv(k)

    r = Buffered(s, rest)
    ok = 0
    for i in range(n):
        for op, data in ((1, ("text %d " % i).encode() * (i + 1)), (2, os.urandom(100 * (i + 1) ** 2))):
            s.sendall(frame(op, data, True))
            while True:
                rop, rdata = read_frame(r)
                if rop == 1 and rdata == b"hello":
                    print("first hello")
                    continue
                break
            if (rop, rdata) == (op, data):
                ok += 1
    s.sendall(frame(8, b"", True))
    print("ok %d" % ok)
    return 0 if ok == 2 * n else 1


def main():
    if sys.argv[1] == "client":
        return client(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6:])
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--first-frame", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    Server.address_family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    srv = Server((a.bind, a.port), Handler)
    srv.args = a
    if a.cert:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.cert, a.key or a.cert)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
