#!/usr/bin/python3
"""Socket activation for the tests, the way a service manager does it.

    activate.py PORT LOG -- CMD [ARG...]

Holds listening TCP sockets on PORT (IPv4, and IPv6-only), both
IP_TRANSPARENT as portcullisd.socket asks, and runs CMD with them as fds 3
and 4 (LISTEN_FDS=2, LISTEN_PID), its output appended to LOG.  The sockets
stay open, and the port bound, after CMD exits.  SIGUSR1 runs CMD again;
SIGTERM ends CMD and then this.  Prints "started PID" and "exited PID STATUS".
"""
import os
import signal
import socket
import sys

IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75


def listeners(port):
    socks = []
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        s.bind((addr, port))
        s.listen(4096)
        socks.append(s)
    return socks


def start(socks, log, cmd):
    pid = os.fork()
    if pid == 0:
        # Out of the way first: a socket may already sit on fd 3 or 4.
        high = [os.dup(s.fileno()) for s in socks]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(len(socks))
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execvp(cmd[0], cmd)
    print("started", pid, flush=True)
    return pid


def main():
    port, log, sep, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    if sep != "--" or not cmd:
        sys.exit("usage: activate.py PORT LOG -- CMD [ARG...]")
    wanted = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    socks = listeners(port)
    child = start(socks, log, cmd)
    while True:
        sig = signal.sigwait(wanted)
        if sig == signal.SIGCHLD:
            while child:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                print("exited", pid, os.waitstatus_to_exitcode(status), flush=True)
                if pid == child:
                    child = 0
        elif sig == signal.SIGUSR1 and not child:
            child = start(socks, log, cmd)
        elif sig in (signal.SIGTERM, signal.SIGINT):
            if child:
                os.kill(child, signal.SIGTERM)
                _, status = os.waitpid(child, 0)
                print("exited", child, os.waitstatus_to_exitcode(status), flush=True)
            return


if __name__ == "__main__":
    main()
