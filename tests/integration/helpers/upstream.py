#!/usr/bin/python3
"""Test upstream server for portcullis integration tests.

Runs inside the test's upstream namespace.  Modes:
  http    tiny HTTP/1.1 server: "200 ok METHOD PATH", one line per request
          appended to --log (so a test can count what really arrived)
  echo    echo every byte back; EOF -> close
  sink    read to EOF, then answer the sha256 hex of what arrived, then close
          (proves half-close: the client shut its write side and still reads)
  source  send --bytes deterministic bytes, then close
Every accepted connection is appended to --log as "CONNECT <peer>" as well.
"""
import argparse
import hashlib
import socket
import socketserver
import sys
import threading

LOCK = threading.Lock()


def log(path, line):
    if not path:
        return
    with LOCK, open(path, "a") as f:
        f.write(line + "\n")


def pattern(n):
    block = bytes(range(256)) * 256  # 64 KiB
    while n > 0:
        chunk = block[: min(n, len(block))]
        n -= len(chunk)
        yield chunk


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        a = self.server.args
        s = self.request
        log(a.log, "CONNECT %s" % (self.client_address[0],))
        try:
            getattr(self, "do_" + a.mode)(s, a)
        except (ConnectionError, OSError):
            pass

    def do_echo(self, s, a):
        while True:
            d = s.recv(65536)
            if not d:
                return
            s.sendall(d)

    def do_sink(self, s, a):
        h = hashlib.sha256()
        n = 0
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        s.sendall(("%s %d\n" % (h.hexdigest(), n)).encode())

    def do_source(self, s, a):
        for chunk in pattern(a.bytes):
            s.sendall(chunk)

    def do_banner(self, s, a):
        # server speaks first (like SSH or SMTP), then echoes one line
        s.sendall(b"220 banner ready\r\n")
        d = s.recv(1024)
        s.sendall(b"echo " + d)

    def do_http(self, s, a):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            clen = 0
            for l in lines[1:]:
                k, _, v = l.partition(":")
                if k.strip().lower() == "content-length":
                    clen = int(v.strip())
            while len(buf) < clen:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[clen:]
            log(a.log, "REQUEST %s %s" % (method, path))
            body = ("ok %s %s port %d\n" % (method, path, a.port)).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["http", "echo", "sink", "source", "banner"], required=True)
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--log")
    a = p.parse_args()
    Server.address_family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    srv = Server((a.bind, a.port), Handler)
    srv.args = a
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
