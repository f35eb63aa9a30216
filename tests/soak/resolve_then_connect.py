#!/usr/bin/env python3
"""Checks enforcement from inside a container or a VM's guest: used by daemon_soak.sh.

Usage: resolve_then_connect.py [--datagrams] RESOLVER NAME TYPE UNANSWERED TALLY

Asks RESOLVER (any address: the cgroup's hooks steer port 53 to its
endpoint) for NAME (TYPE A or AAAA) over UDP, and the instant an answer
arrives opens a TCP connection to each address in it; then one to
UNANSWERED, an address no answer holds. The container's namespace has
only loopback, so nothing is sent: the cgroup's connect hook runs before
the route lookup, so an address the policy refuses fails with EPERM and
one it allows goes on to fail with ENETUNREACH. Prints one line per
broken promise (an answered address refused, or the unanswered one let
through) and exits 1 if there was one; a query with no answer (the
daemon restarting, a name past the learning limit) checks only the
unanswered address. Appends the number of answered addresses it
connected to, a line, to the file TALLY (the soak's summary adds them).

With --datagrams (a VM's guest, whose packets the interface's TC program
judges and the host then drops: it forwards nothing), it sends one UDP
datagram to each address instead and prints how many addresses the
answer held: the caller reads the verdicts from the attachment's counters.
"""
import argparse
import errno
import random
import socket
import struct
import sys

TYPES = {"A": (1, socket.AF_INET, 4), "AAAA": (28, socket.AF_INET6, 16)}


def encode_name(name):
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def skip_name(message, offset):
    while True:
        length = message[offset]
        if length >= 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def answered_addresses(message, ident, rrtype, size):
    """The addresses of RRTYPE in MESSAGE's answer section, if it answers IDENT."""
    got_ident, flags, qdcount, ancount = struct.unpack(">HHHH", message[:8])
    if got_ident != ident or not flags & 0x8000 or flags & 0xF != 0:
        return []
    offset = 12
    for _ in range(qdcount):
        offset = skip_name(message, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = skip_name(message, offset)
        got_type, _, _, rdlength = struct.unpack(">HHIH", message[offset:offset + 10])
        offset += 10
        if got_type == rrtype and rdlength == size:
            addresses.append(message[offset:offset + size])
        offset += rdlength
    return addresses


def connect_errno(family, address):
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.connect((address, 80))
        return 0
    except OSError as error:
        return error.errno
    finally:
        sock.close()


def send_datagram(family, address):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"soak", (address, 9))
    except OSError:
        pass  # no route (an AAAA answer in a guest with IPv4 only): nothing sent
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser()
    for arg in ("resolver", "name", "type", "unanswered", "tally"):
        parser.add_argument(arg)
    parser.add_argument("--datagrams", action="store_true")
    args = parser.parse_args()
    resolver, name, unanswered, tally = args.resolver, args.name, args.unanswered, args.tally
    rrtype, family, size = TYPES[args.type]
    ident = random.randrange(65536)
    query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack(
        ">HH", rrtype, 1)
    udp = socket.socket(socket.AF_INET6 if ":" in resolver else socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(1.0)
    addresses = []
    try:
        udp.sendto(query, (resolver, 53))
        addresses = answered_addresses(udp.recv(4096), ident, rrtype, size)
    except (OSError, struct.error, IndexError):
        pass  # no answer to check: the unanswered address still is
    with open(tally, "a") as out:
        out.write(f"{len(addresses)}\n")
    if args.datagrams:
        for packed in addresses:
            send_datagram(family, socket.inet_ntop(family, packed))
        send_datagram(family, unanswered)
        print(len(addresses))
        return 0
    broken = []
    for packed in addresses:
        address = socket.inet_ntop(family, packed)
        got = connect_errno(family, address)
        if got == errno.EPERM:
            broken.append(f"{name} answered {address}, and a connection to it was refused")
    got = connect_errno(family, unanswered)
    if got != errno.EPERM:
        broken.append(f"{unanswered}, in no answer, was not refused ({errno.errorcode.get(got, got)})")
    for line in broken:
        print(line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
