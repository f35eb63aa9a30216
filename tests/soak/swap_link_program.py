#!/usr/bin/env python3
"""Puts a program that lets everything through in the cgroup link pinned at
each path given (BPF_LINK_UPDATE), as another program could: the link stays
on its cgroup, running that program instead of the daemon's. bpftool has no
command for it. Prints the id of the program each link ran before, one a
line, so that the caller can tell when the daemon has put it back.

Only the few bpf(2) commands it needs, with union bpf_attr laid out as in
<linux/bpf.h>; x86-64 (the system call's number).
"""
import ctypes
import os
import struct
import sys

SYS_BPF = 321
BPF_PROG_LOAD = 5
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_UPDATE = 29
BPF_LINK_TYPE_CGROUP = 3

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    """bpf(cmd, attr); the result, or OSError."""
    buf = ctypes.create_string_buffer(attr, 128)
    ret = libc.syscall(SYS_BPF, cmd, buf, 128)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def info_of(fd, size):
    info = ctypes.create_string_buffer(size)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, size, ctypes.addressof(info)))
    return info.raw


def pass_all_program(prog_type, attach_type):
    # r0 = 1; exit
    insns = struct.pack("=BBhi", 0xB7, 0, 0, 1) + struct.pack("=BBhi", 0x95, 0, 0, 0)
    insns_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack(
        "=IIQQIIQII16sII",
        prog_type,
        2,
        ctypes.addressof(insns_buf),
        ctypes.addressof(license_buf),
        0, 0, 0, 0, 0,  # log level, size, buffer; kernel version; flags
        b"other_pass_all",
        0,  # ifindex
        attach_type)
    return bpf(BPF_PROG_LOAD, attr)


def swap(pin):
    path = ctypes.create_string_buffer(pin.encode())
    link = bpf(BPF_OBJ_GET, struct.pack("=QIIi", ctypes.addressof(path), 0, 0, 0))
    try:
        # struct bpf_link_info: type, id, prog_id, then the cgroup's id and
        # attach type at offsets 16 and 24.
        link_type, _, prog_id, _, attach_type = struct.unpack_from("=IIIxxxxQI", info_of(link, 64))
        if link_type != BPF_LINK_TYPE_CGROUP:
            raise OSError(0, "not a cgroup link")
        prog = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=III", prog_id, 0, 0))
        try:
            (prog_type,) = struct.unpack_from("=I", info_of(prog, 64))
        finally:
            os.close(prog)
        other = pass_all_program(prog_type, attach_type)
        try:
            bpf(BPF_LINK_UPDATE, struct.pack("=IIII", link, other, 0, 0))
        finally:
            os.close(other)
        return prog_id
    finally:
        os.close(link)


def main():
    status = 0
    for pin in sys.argv[1:]:
        try:
            print(swap(pin))
        except OSError as e:
            print(f"{pin}: {e.strerror}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
