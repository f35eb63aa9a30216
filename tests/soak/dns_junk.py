#!/usr/bin/env python3
"""Sends a DNS endpoint what no client should: used by daemon_soak.sh.

Usage: dns_junk.py ADDRESS PORT. Over UDP: random bytes, a header whose
counts lie, a question that points at itself, a good query with EDNS
options and bytes after it; over TCP: a length past what follows.
"""
import os
import random
import socket
import struct
import sys


def header(ident, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def junk():
    kind = random.randrange(4)
    if kind == 0:
        return os.urandom(random.randrange(0, 600))
    if kind == 1:  # counts far past the message
        return header(random.randrange(65536), 0x0100, 65535, 65535, 65535, 65535) + os.urandom(
            random.randrange(40))
    if kind == 2:  # a compression pointer to itself
        return header(1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    question = b"\x02n1\x04soak\x07example\x00\x00\x01\x00\x01"
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00" + struct.pack(">H", 30) + os.urandom(30)
    return header(2, 0x0100, 1, 0, 0, 1) + question + opt + os.urandom(random.randrange(20))


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.settimeout(0.05)
    for _ in range(20):
        try:
            udp.sendto(junk(), (address, port))
            udp.recv(4096)
        except OSError:
            pass
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.settimeout(0.2)
    try:
        tcp.connect((address, port))
        tcp.sendall(struct.pack(">H", 65535) + os.urandom(100))
        tcp.recv(10)
    except OSError:
        pass


if __name__ == "__main__":
    main()
