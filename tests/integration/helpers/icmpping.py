#!/usr/bin/python3
"""ping without the ping package: one ICMP echo to argv[1] (IPv4), exit 0 if
a reply arrives within 1 s.  Needs CAP_NET_RAW (root in the namespace)."""
import os
import select
import socket
import struct
import sys


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
payload = b"portcullis-test"
pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, 1) + payload
s.sendto(pkt, (dst, 0))
while True:
    r, _, _ = select.select([s], [], [], 1.0)
    if not r:
        sys.exit(1)
    data, peer = s.recvfrom(2048)
    icmp = data[(data[0] & 0x0F) * 4:]
    if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        sys.exit(0)
