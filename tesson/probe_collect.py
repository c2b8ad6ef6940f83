"""The inside of a topology probe: ``python3 -m tesson.probe_collect`` in a short-lived container on
the Docker daemon's host (tesson.probe starts it, and reads its answer back).

The container has the host's ``/sys`` bind-mounted read-only at ``/host/sys`` and nothing else of
the host. It runs tesson's own topology reader over a mapped view of the machine:

- ``/sys/...`` is the host's sysfs (``/host/sys``): CPUs, caches, NUMA nodes, PCI and the host's
  network devices (a bind of the host's sysfs mount keeps the host's network namespace view);
- ``/sys/fs/cgroup/...`` and ``/proc/...`` are the container's own: the cpuset a container gets on
  that host, as the container's ``/proc/self/cgroup`` and ``/proc/mounts`` name it;

and notes every path the reader touches (files read, folders listed, links read, paths tested),
I/O devices and every lazily read id and size included (it renders both views). The answer is a tar
of exactly those paths (files with the bytes read, not sysfs's nominal 4096-byte sizes; folders
with their entries, unread ones as empty stubs; every symlink on the way, with its target, so
relative links resolve as on the host), plus ``proc/hwloc-nofile-info`` naming the host's
architecture (as hwloc's dumps do) and ``tesson-probe.json`` (tesson's version, the host's boot ID,
architecture and name). Unpacked into a folder, ``topology.read(folder)`` gives the very topology
the reader found on the host, so the plans are those a local read there gives.

The answer is written to :data:`ANSWER` in the container (the daemon hands it back with the
archive API after the container exits: no log driver is involved). Exit 0, or 1 with one line on
stderr.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tarfile

from tesson.topology.sysfs import FS

HOST_SYS = "/host/sys"
ANSWER = "/tmp/tesson-probe.tar"
META = "tesson-probe.json"
MAX_LINKS = 40  # symlinks followed for one path (a loop, or a very deep chain, stops there)


class MappedFS(FS):
    """The reader's view in the probe: see the module's docstring. ``seen`` collects every path."""

    def __init__(self, host_sys: str = HOST_SYS, rest: str = ""):
        super().__init__("")
        self.host_sys = host_sys.rstrip("/")
        self.rest = rest.rstrip("/")  # where everything else is ("": the container's own)
        self.seen: set[str] = set()

    def real(self, p: str) -> str:
        if p == "/sys/fs/cgroup" or p.startswith("/sys/fs/cgroup/"):
            return self.rest + p
        if p == "/sys" or p.startswith("/sys/"):
            return self.host_sys + p[4:]
        return self.rest + p

    def path(self, p: str) -> str:
        self.seen.add(p)
        return self.real(p)

    def at(self, p: str) -> FS:
        return _Under(self, p)


class _Under(FS):
    """``fs.at(folder)`` in the probe: relative paths, still mapped and noted (no directory fd)."""

    def __init__(self, parent: MappedFS, base: str):
        super().__init__("")
        self.parent, self.base = parent, base.rstrip("/")

    def path(self, p: str) -> str:
        return self.parent.path(f"{self.base}/{p}")

    def close(self) -> None:
        pass


def _read_all(real: str) -> bytes | None:
    try:
        fd = os.open(real, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    except OSError:
        return b"" if not chunks else b"".join(chunks)
    finally:
        os.close(fd)


class Packer:
    """Machine paths -> tar entries: ``("dir",)``, ``("file", bytes)``, ``("link", target)``."""

    def __init__(self, fs: MappedFS):
        self.fs = fs
        self.entries: dict[str, tuple] = {}

    def add(self, p: str) -> None:
        """Everything on the way to ``p`` and ``p`` itself (a file's bytes, a folder's entries)."""
        end = self._walk(p, 0)
        if end is None:
            return
        real = self.fs.real(end)
        try:
            st = os.stat(real)
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.entries.setdefault(end, ("dir",))
            try:
                names = os.listdir(real)
            except OSError:
                names = []
            for name in names:
                child = f"{end.rstrip('/')}/{name}"
                try:
                    cst = os.lstat(self.fs.real(child))
                except OSError:
                    continue
                if stat.S_ISLNK(cst.st_mode):
                    target = os.readlink(self.fs.real(child))
                    self.entries.setdefault(child, ("link", target))
                elif stat.S_ISDIR(cst.st_mode):
                    self.entries.setdefault(child, ("dir",))
                else:
                    self.entries.setdefault(child, ("file", b""))
        else:
            data = _read_all(real)
            if data is not None:
                self.entries[end] = ("file", data)

    def _walk(self, p: str, links: int) -> str | None:
        """Record the folders and symlinks on the way to ``p``; return where it really is."""
        cur = ""
        parts = [c for c in p.split("/") if c]
        for i, comp in enumerate(parts):
            nxt = f"{cur}/{comp}"
            real = self.fs.real(nxt)
            try:
                st = os.lstat(real)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                if links >= MAX_LINKS:
                    return None
                target = os.readlink(real)
                self.entries[nxt] = ("link", target)
                resolved = os.path.normpath(target if target.startswith("/") else f"{cur or '/'}/{target}")
                where = self._walk(resolved, links + 1)
                if where is None:
                    return None
                cur = where
            else:
                if i < len(parts) - 1 or stat.S_ISDIR(st.st_mode):
                    self.entries.setdefault(nxt, ("dir",))
                cur = nxt
        return cur or "/"

    def tar(self, extra: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            items = dict(self.entries)
            for name, data in extra.items():
                items[name] = ("file", data)
            for p in sorted(items):
                kind = items[p]
                info = tarfile.TarInfo(p.lstrip("/"))
                info.mtime = 0
                if kind[0] == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif kind[0] == "link":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, kind[1], 0o777
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(kind[1]), 0o444
                    tar.addfile(info, io.BytesIO(kind[1]))
        return buf.getvalue()


def collect(host_sys: str = HOST_SYS, rest: str = "") -> bytes:
    """Read the topology as tesson does (both with and without isolated CPUs, I/O devices, every
    lazy id and size) and return the tar of what was read, with the probe's facts. ``rest``: where
    the paths outside ``/sys`` (and sysfs's cgroup mounts) are, "" for this container's own."""
    from tesson import __version__, topology
    from tesson.topology.render import render_text

    fs = MappedFS(host_sys, rest)
    for include_isolated in (False, True):
        topo = topology.read("/", include_isolated=include_isolated, fs=fs)
        render_text(topo)  # reads the I/O devices, and every id and size shown
        topo.to_json()
    boot_id = (_read_all("/proc/sys/kernel/random/boot_id") or b"").decode().strip()
    meta = {"version": __version__, "arch": os.uname().machine, "boot_id": boot_id, "paths": len(fs.seen)}
    packer = Packer(fs)
    for p in sorted(fs.seen):
        packer.add(p)
    extra = {"/" + META: json.dumps(meta).encode()}
    if "/proc/hwloc-nofile-info" not in packer.entries:  # the reader takes the architecture from it
        extra["/proc/hwloc-nofile-info"] = f"Architecture: {os.uname().machine}\n".encode()
    return packer.tar(extra)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else ANSWER
    from tesson.errors import TessonError

    try:
        data = collect()
    except TessonError as e:
        print(f"probe: {e}", file=sys.stderr)
        return 1
    with open(out, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
