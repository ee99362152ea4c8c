#!/usr/bin/python3
"""Send raw bytes (argv[3], with \\r \\n escapes; several args = several
writes 0.3 s apart) to HOST PORT and print all that comes back until the
peer closes (or 10 s).  Exit 0 when the peer closed cleanly.
With --delay S first, wait S seconds after connecting before the first write;
with --shut, half-close (FIN) after the last write."""
import socket
import sys
import time

args = sys.argv[1:]
delay = 0.0
shut = False
while args[:1] in (["--delay"], ["--shut"]):
    if args[0] == "--shut":
        shut = True
        args = args[1:]
    else:
        delay = float(args[1])
        args = args[2:]
host, port = args[0], int(args[1])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
s.connect((host, port))
time.sleep(delay)
for i, chunk in enumerate(args[2:]):
    if i:
        time.sleep(0.3)
    s.sendall(chunk.encode().decode("unicode_escape").encode("latin-1"))
if shut:
    s.shutdown(socket.SHUT_WR)
out = b""
rc = 0
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except ConnectionResetError:
    rc = 2
except socket.timeout:
    rc = 3
sys.stdout.write(out.decode("latin-1"))
sys.exit(rc)
