#!/usr/bin/python3
"""UDP sink for tests: logs every datagram's source to --log."""
import argparse
import socket
import sys

p = argparse.ArgumentParser()
p.add_argument("--bind", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--log", required=True)
a = p.parse_args()
s = socket.socket(socket.AF_INET6 if ":" in a.bind else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((a.bind, a.port))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    with open(a.log, "a") as f:
        f.write("DATAGRAM %s\n" % peer[0])
