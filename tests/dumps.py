"""The real machines' sysfs dumps in ../shared/fixtures/hwloc-sysfs, unpacked once per test session."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.conftest import SHARED

DUMPS_DIR = SHARED / "fixtures" / "hwloc-sysfs"
NAMES = sorted(p.name[: -len(".tar.bz2")] for p in DUMPS_DIR.glob("*.tar.bz2")) if DUMPS_DIR.is_dir() else []
MISSING = f"no sysfs dumps in {DUMPS_DIR} (the shared fixtures)"
# a test parametrized over NAMES still exists (and is skipped/failed with the reason) without dumps
PARAMS = NAMES or ["no-dumps"]

_unpacked: dict[str, Path] = {}


def _dest(name: str, tmp_path_factory) -> Path:
    """A fresh folder, in RAM (/dev/shm) when there is one: the dumps are thousands of tiny files."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        d = tempfile.mkdtemp(prefix=f"tesson-sysfs-{name}-", dir=shm)
        atexit.register(shutil.rmtree, d, True)
        return Path(d)
    return tmp_path_factory.mktemp(f"sysfs-{name}")


def unpack(name: str, tmp_path_factory) -> Path:
    """The folder holding the dump's sys/ and proc/ (the tarball's one top folder, whatever its name)."""
    if name not in _unpacked:
        dest = _dest(name, tmp_path_factory)
        archive = DUMPS_DIR / f"{name}.tar.bz2"
        if shutil.which("tar"):  # GNU tar is ~10x faster than tarfile on thousands of tiny files
            subprocess.run(["tar", "-xjf", str(archive), "-C", str(dest)], check=True, timeout=120)
        else:
            with tarfile.open(archive) as tar:
                try:
                    tar.extractall(dest, filter="tar")
                except TypeError:  # Python without extraction filters
                    tar.extractall(dest)
        tops = [p for p in dest.iterdir() if p.is_dir()]
        root = tops[0] if len(tops) == 1 and not (dest / "sys").is_dir() else dest
        assert (root / "sys").is_dir(), f"{name}: no sys/ in the tarball"
        _unpacked[name] = root
    return _unpacked[name]
