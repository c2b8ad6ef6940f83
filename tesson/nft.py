"""The kernel's firewall, through ``nft -j`` (libnftables' JSON interface) and rtnetlink.

No shell is involved: ``nft`` gets the JSON document on stdin (``nft -j -f -``) as an argument
vector, and its answer comes back as JSON. Errors become :class:`NftError` with one line saying
the cause and the fix (a missing ``nft``, a missing capability, a kernel without NAT).

:func:`set_route_localnet` sets one interface's ``route_localnet`` through rtnetlink (RTM_SETLINK,
``IFLA_AF_SPEC`` / ``AF_INET`` / ``IFLA_INET_CONF``), which also works where ``/proc/sys`` is read
only (a container in the host's network with CAP_NET_ADMIN).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess

from tesson.errors import TessonError

TIMEOUT = 10.0


class NftError(TessonError):
    """nft refused or could not run; ``kind`` is "missing", "permission", "nat", "busy" or "other"."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


def _nft() -> str:
    path = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if not path:
        raise NftError("nft is not installed here (Debian: apt-get install nftables)", "missing")
    return path


def _explain(text: str, doing: str) -> NftError:
    low = text.lower()
    line = " ".join(text.split())[:300]
    if "operation not permitted" in low or "permission denied" in low:
        return NftError(
            f"{doing}: not permitted (the kernel front door needs CAP_NET_ADMIN in the host's network "
            "namespace; a rootless or user-namespaced daemon cannot give it: use --lb nginx)", "permission")
    if ("nat" in low or "numgen" in low or "fib" in low or "masquerade" in low) and (
            "no such file" in low or "not supported" in low):
        return NftError(
            f"{doing}: this kernel has no nftables NAT (nf_tables with nft_nat, nft_numgen, nft_fib, "
            f"nft_masq): load those modules or use --lb nginx ({line})", "nat")
    if "device or resource busy" in low:
        return NftError(f"{doing}: {line}", "busy")
    return NftError(f"{doing}: nft said: {line}", "other")


def apply(doc: dict, check_only: bool = False, doing: str = "writing the group's rules") -> None:
    """Run one transaction (all of ``doc`` or nothing). ``check_only``: the kernel checks it, then drops it."""
    argv = [_nft(), "-j"] + (["-c"] if check_only else []) + ["-f", "-"]
    try:
        r = subprocess.run(argv, input=json.dumps(doc), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise NftError(f"{doing}: nft did not answer in {TIMEOUT:.0f}s") from None
    if r.returncode != 0:
        raise _explain(r.stderr or r.stdout, doing)


def listing(*what: str, doing: str = "reading the rules") -> dict | None:
    """``nft -j list WHAT...`` as JSON; None when the table or chain does not exist."""
    try:
        r = subprocess.run([_nft(), "-j", "list", *what], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise NftError(f"{doing}: nft did not answer in {TIMEOUT:.0f}s") from None
    if r.returncode != 0:
        if "no such file or directory" in r.stderr.lower():
            return None
        raise _explain(r.stderr, doing)
    return json.loads(r.stdout or "{}")


# -- rtnetlink: one interface's route_localnet ------------------------------------------------------

RTM_SETLINK = 19
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1
IPV4_DEVCONF_ROUTE_LOCALNET = 26  # include/uapi/linux/ip.h: enum IPV4_DEVCONF_*
NLA_F_NESTED = 1 << 15


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def set_route_localnet(ifname: str, on: bool) -> None:
    """Turn ``net.ipv4.conf.IFNAME.route_localnet`` on or off (OSError: no such interface, not permitted)."""
    index = socket.if_nametoindex(ifname)
    conf = _attr(IPV4_DEVCONF_ROUTE_LOCALNET, struct.pack("=I", 1 if on else 0))
    spec = _attr(IFLA_AF_SPEC | NLA_F_NESTED,
                 _attr(socket.AF_INET | NLA_F_NESTED, _attr(IFLA_INET_CONF | NLA_F_NESTED, conf)))
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + spec
    msg = struct.pack("=IHHII", 16 + len(body), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.settimeout(TIMEOUT)
        s.bind((0, 0))
        s.sendall(msg)
        data = s.recv(65536)
    _length, kind = struct.unpack("=IH", data[:6])
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack("=i", data[16:20])
        if err:
            raise OSError(-err, f"route_localnet on {ifname}: {os.strerror(-err)}")


def route_localnet(ifname: str) -> bool | None:
    """The interface's route_localnet as the kernel has it (None: no such interface)."""
    try:
        with open(f"/proc/sys/net/ipv4/conf/{ifname}/route_localnet") as f:
            return f.read().strip() == "1"
    except FileNotFoundError:
        return None
