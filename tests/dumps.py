"""The real machines' sysfs dumps in tests/fixtures/hwloc-sysfs, unpacked once per test session.

``NAMES`` is the fixed list of dumps the comparisons with hwloc run on: a dump missing from the
folder fails its tests (it is never skipped), so a checkout that lost one cannot pass for green.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

DUMPS_DIR = Path(__file__).resolve().parent / "fixtures" / "hwloc-sysfs"
NAMES = (
    "128arm-2pa2n8cluster4co",
    "16amd64-8n2c",
    "16amd64-8n2c-cpusets",
    "16em64t-4s2c2t",
    "16em64t-4s2c2t-offlines",
    "20em64t-hybrid-1p6c2t+2ca4co1t",
    "2arm-2c",
    "2pa-pcidomain32bits",
    "32amd64-4s2n4c-cgroup2",
    "48amd64-4pa2n6c-sparse",
    "64amd64-4s2n4ca2co",
    "8em64t-2s2ca2c",
    "fakepcilocalities",
    "offline-cpu0-node0",
)

_unpacked: dict[str, Path] = {}


def archive(name: str) -> Path:
    return DUMPS_DIR / f"{name}.tar.bz2"


def _dest(name: str, tmp_path_factory) -> Path:
    """A fresh folder, in RAM (/dev/shm) when there is one: the dumps are thousands of tiny files."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        d = tempfile.mkdtemp(prefix=f"tesson-sysfs-{name}-", dir=shm)
        atexit.register(shutil.rmtree, d, True)
        return Path(d)
    return tmp_path_factory.mktemp(f"sysfs-{name}")


def unpack(name: str, tmp_path_factory) -> Path:
    """The folder holding the dump's sys/ and proc/ (the tarball's one top folder, whatever its name).
    Fails the calling test when the dump is missing from tests/fixtures."""
    if name not in _unpacked:
        path = archive(name)
        if not path.is_file():
            pytest.fail(f"sysfs dump {path} is missing (tests/fixtures is part of the repository)")
        dest = _dest(name, tmp_path_factory)
        if shutil.which("tar"):  # GNU tar is ~10x faster than tarfile on thousands of tiny files
            subprocess.run(["tar", "-xjf", str(path), "-C", str(dest)], check=True, timeout=120)
        else:
            with tarfile.open(path) as tar:
                try:
                    tar.extractall(dest, filter="tar")
                except TypeError:  # Python without extraction filters
                    tar.extractall(dest)
        tops = [p for p in dest.iterdir() if p.is_dir()]
        root = tops[0] if len(tops) == 1 and not (dest / "sys").is_dir() else dest
        if not (root / "sys").is_dir():
            pytest.fail(f"{name}: no sys/ in {path}")
        _unpacked[name] = root
    return _unpacked[name]
