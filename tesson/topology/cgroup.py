"""Which CPUs and memory nodes this process may use: its cpuset cgroup (v2, v1, or the old cpuset
filesystem), found the way hwloc finds it (hwloc_linux__get_allowed_resources)."""

from __future__ import annotations

from tesson.topology.sysfs import FS


def _unescape_mount(field: str) -> str:
    """/proc/mounts writes a space in a path as \\040 (octal), like getmntent() undoes it."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _cgroup_mount(fs: FS) -> tuple[str, str] | None:
    """(kind, mount point) of the cpuset controller: 'cgroup2', 'cgroup1' or 'cpuset' (old cpuset fs)."""
    if fs.exists("/sys/fs/cgroup/cpuset.cpus.effective"):
        return "cgroup2", "/sys/fs/cgroup"
    if fs.exists("/sys/fs/cgroup/cpuset/cpuset.cpus"):
        return "cgroup1", "/sys/fs/cgroup/cpuset"
    if fs.exists("/dev/cpuset/cpus"):
        return "cpuset", "/dev/cpuset"
    mounts = fs.read("/proc/mounts")
    if not mounts:
        return None
    for line in mounts.decode(errors="replace").splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        mnt, fstype, opts = _unescape_mount(f[1]), f[2], f[3].split(",")
        if fstype == "cgroup2":
            ctrls = fs.read(mnt + "/cgroup.controllers")
            if ctrls and "cpuset" in ctrls.decode(errors="replace").split("\n", 1)[0].split(" "):
                return "cgroup2", mnt
        elif fstype == "cpuset":
            return "cpuset", mnt
        elif fstype == "cgroup" and "cpuset" in opts:
            return ("cpuset" if "noprefix" in opts else "cgroup1"), mnt
    return None


def _cgroup_name(fs: FS) -> str | None:
    data = fs.read("/proc/self/cpuset")
    if data:
        return data.decode(errors="replace").split("\n", 1)[0]
    data = fs.read("/proc/self/cgroup")
    if data:
        for line in data.decode(errors="replace").splitlines():
            colon = line.find(":")
            if colon < 0:
                continue
            rest = line[colon:]
            if rest.startswith(":cpuset:"):
                return rest[8:]
            if rest.startswith("::"):
                return rest[2:]
    return None


def allowed_from_cgroup(fs: FS) -> tuple[int | None, int | None]:
    """(allowed cpus, allowed mems) from the process's cpuset cgroup; None means no restriction."""
    found = _cgroup_mount(fs)
    if not found:
        return None, None
    kind, mnt = found
    name = _cgroup_name(fs)
    if name is None:
        return None, None
    base = mnt + name
    out = []
    for attr in ("cpus", "mems"):
        if kind == "cgroup2":
            cands = [f"{base}/cpuset.{attr}.effective"]
        elif kind == "cgroup1":
            # hwloc reads cpuset.cpus (offline CPUs are removed anyway); effective_* only if it is missing
            cands = [f"{base}/cpuset.{attr}", f"{base}/cpuset.effective_{attr}"]
        else:
            cands = [f"{base}/{attr}"]
        value = None
        for c in cands:
            value = fs.read_list(c)
            if value is not None:
                break
        out.append(value)
    return out[0], out[1]

