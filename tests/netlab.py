"""Network namespaces made by the tests themselves: veth pairs, small servers, crafted packets.

Addresses come from the benchmarking ranges 198.18.0.0/15 only. Everything made here is removed
by :meth:`Lab.close` (namespaces take their interfaces with them; a veth whose other end lives in
the host's namespace is deleted by name). Commands are argument vectors, never shell strings.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

SERVER = r"""
import socket, sys, threading
name, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{name} {peer[0]}".encode(), peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(128)
print("ready", flush=True)
def serve(c, peer):
    with c:
        c.recv(1024)
        c.sendall(f"{name} {peer[0]}".encode())
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


def in_ns(ns: str | None, argv: list[str], **kw) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", ns] if ns else []) + argv
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    return subprocess.run(full, **kw)


class Lab:
    """Namespaces and host-side veths named with a short per-test prefix; close() removes them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix[:6]
        self.namespaces: list[str] = []
        self.host_links: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def netns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        ip("netns", "del", full, check=False)
        ip("netns", "add", full)
        self.namespaces.append(full)
        ip("link", "set", "lo", "up", ns=full)
        return full

    def veth(self, a_ns: str | None, a_name: str, b_ns: str | None, b_name: str) -> None:
        """A veth pair a_name (in a_ns, None = this namespace) <-> b_name (in b_ns)."""
        if a_ns is None:
            ip("link", "del", a_name, check=False)
            self.host_links.append(a_name)
        ip("link", "add", a_name, *(["netns", a_ns] if a_ns else []), "type", "veth",
           "peer", "name", b_name, *(["netns", b_ns] if b_ns else []))
        ip("link", "set", a_name, "up", ns=a_ns)
        ip("link", "set", b_name, "up", ns=b_ns)

    def server(self, ns: str, name: str, port: int, proto: str = "tcp") -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, name, str(port), proto],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        if proto == "tcp":
            line = p.stdout.readline()
            assert line.strip() == "ready", f"server {name} did not start"

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=5)
        for link in self.host_links:
            ip("link", "del", link, check=False)
        for ns in self.namespaces:
            ip("netns", "del", ns, check=False)


def client_pair(lab: Lab, host_if: str, host_ns: str | None = None) -> str:
    """An outside client: namespace CLIENT with 198.18.0.2/30 on a veth whose other end (``host_if``,
    198.18.0.1/30) is in ``host_ns`` (None: this machine's namespace). Returns the client's namespace."""
    client = lab.netns("client")
    lab.veth(host_ns, host_if, client, "eth0")
    ip("addr", "add", "198.18.0.1/30", "dev", host_if, ns=host_ns)
    ip("addr", "add", "198.18.0.2/30", "dev", "eth0", ns=client)
    ip("route", "add", "default", "via", "198.18.0.1", ns=client)
    return client


def ask(ns: str | None, host: str, port: int, proto: str = "tcp", timeout: float = 3.0) -> str:
    """One request from namespace ``ns``: the answer text ("" when nothing answered)."""
    code = (
        "import socket,sys\n"
        "h,p,proto,t=sys.argv[1],int(sys.argv[2]),sys.argv[3],float(sys.argv[4])\n"
        "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto=='udp' else socket.SOCK_STREAM)\n"
        "s.settimeout(t)\n"
        "try:\n"
        "    s.connect((h,p)); s.send(b'hi'); print(s.recv(1024).decode())\n"
        "except OSError as e:\n"
        "    print('')\n"
    )
    r = in_ns(ns, [sys.executable, "-c", code, host, str(port), proto, str(timeout)])
    return r.stdout.strip()


# -- a crafted TCP SYN, to send what no socket would (a packet for 127.0.0.1 from outside) ----------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    csum = _checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s, d)
    iph = iph[:10] + struct.pack("!H", _checksum(iph)) + iph[12:]
    return dst_mac + src_mac + b"\x08\x00" + iph + tcp


PROBE = r"""
import socket, struct, sys, time
ifname, dst_mac, src, dst, sport, dport, wait = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
sys.path.insert(0, sys.argv[8])
from tests.netlab import syn_frame
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0x0800))
src_mac = s.getsockname()[4]
s.settimeout(0.1)
s.send(syn_frame(src_mac, dst_mac, src, dst, sport, dport))
end = time.monotonic() + wait
answered = "no"
while time.monotonic() < end:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    ip = frame[14:]
    if len(ip) < 40 or ip[9] != 6:
        continue
    ihl = (ip[0] & 15) * 4
    sp, dp = struct.unpack("!HH", ip[ihl:ihl + 4])
    flags = ip[ihl + 13]
    if dp == sport and socket.inet_ntoa(ip[16:20]) == src:
        answered = "synack" if flags & 0x12 == 0x12 else ("rst" if flags & 0x04 else "other")
        break
print(answered)
"""


def mac_of(ifname: str, ns: str | None = None) -> str:
    import json

    r = ip("-j", "link", "show", ifname, ns=ns)
    return json.loads(r.stdout)[0]["address"].replace(":", "")


def probe_syn(ns: str, ifname: str, dst_mac: str, src: str, dst: str, dport: int, wait: float = 1.5) -> str:
    """Send one SYN for ``dst:dport`` out of ``ifname`` in ``ns`` to ``dst_mac`` (whatever the
    destination address, even 127.0.0.1) and say what came back: "synack", "rst", "other" or "no"."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sport = 40000 + (os.getpid() + int(time.monotonic() * 1000)) % 20000
    r = in_ns(ns, [sys.executable, "-c", PROBE, ifname, dst_mac, src, dst, str(sport), str(dport), str(wait), root])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()
