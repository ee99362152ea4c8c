#!/usr/bin/python3
"""Test client run inside a sandbox.  Prints one result line; exit 0 on success.

  halfclose HOST PORT BYTES   send BYTES, shut the write side, read the sink's
                              sha256 reply and compare with what was sent
  download HOST PORT          read to EOF, print "sha256 bytes"
  parallel HOST PORT N        N concurrent echo round trips; print "ok N"
  connect HOST PORT           connect and send one line; print "connected" or the error
"""
import hashlib
import socket
import sys
import threading


def conn(host, port, timeout=20):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def pattern(n):
    block = bytes(range(256)) * 256
    while n > 0:
        chunk = block[: min(n, len(block))]
        n -= len(chunk)
        yield chunk


def halfclose(host, port, n):
    s = conn(host, port)
    h = hashlib.sha256()
    for c in pattern(n):
        h.update(c)
        s.sendall(c)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        reply += d
    want = "%s %d" % (h.hexdigest(), n)
    got = reply.decode().strip()
    print("sent %s got %s" % (want, got))
    return 0 if got == want else 1


def download(host, port):
    s = conn(host, port, timeout=60)
    h = hashlib.sha256()
    n = 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    print("%s %d" % (h.hexdigest(), n))
    return 0


def parallel(host, port, n):
    ok = []
    barrier = threading.Barrier(n)

    def one(i):
        try:
            s = conn(host, port)
            barrier.wait(timeout=30)
            msg = ("hello %d\n" % i).encode() * 100
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(65536)
                if not d:
                    break
                got += d
            s.close()
            if got == msg:
                ok.append(i)
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            print("conn %d: %s" % (i, e), file=sys.stderr)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("ok %d" % len(ok))
    return 0 if len(ok) == n else 1


def connect(host, port):
    try:
        s = conn(host, port, timeout=5)
        s.sendall(b"ping\n")
        s.settimeout(3)
        try:
            d = s.recv(100)
        except socket.timeout:
            d = b"(timeout)"
        print("connected %r" % d)
        return 0
    except OSError as e:
        print("error %s" % e.__class__.__name__)
        return 1


def expect_reset(host, port):
    """Exit 0 when the connection is reset (or refused), 1 on a clean EOF or data."""
    try:
        s = conn(host, port, timeout=20)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        d = s.recv(100)
        print("clean close" if not d else "data %r" % d)
        return 1
    except (ConnectionResetError, ConnectionRefusedError) as e:
        print("reset (%s)" % e.__class__.__name__)
        return 0
    except OSError as e:
        print("other error %s" % e)
        return 1


def banner(host, port):
    """Server-first protocol: read the greeting, answer, read the echo."""
    s = conn(host, port, timeout=10)
    greeting = s.recv(100)
    s.sendall(b"hello\r\n")
    echo = s.recv(100)
    print("%s|%s" % (greeting.decode().strip(), echo.decode().strip()))
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "halfclose":
        return halfclose(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    if cmd == "download":
        return download(sys.argv[2], int(sys.argv[3]))
    if cmd == "parallel":
        return parallel(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    if cmd == "banner":
        return banner(sys.argv[2], int(sys.argv[3]))
    if cmd == "expect_reset":
        return expect_reset(sys.argv[2], int(sys.argv[3]))
    if cmd == "connect":
        return connect(sys.argv[2], int(sys.argv[3]))
    print("unknown command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
