#!/usr/bin/python3
"""Send raw bytes (argv[3], with \\r \\n escapes; several args = several
writes 0.3 s apart) to HOST PORT and print all that comes back until the
peer closes (or 10 s).  Exit 0 when the peer closed cleanly.
With --delay S first, wait S seconds after connecting before the first write."""
import socket
import sys
import time

args = sys.argv[1:]
delay = 0.0
if args[:1] == ["--delay"]:
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
