"""The topology probe's pure parts: what it ships reads back as the same topology (on every hwloc
dump, devices included), the same-machine rule, the cache's validity rule. No daemon needed."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tesson import placement, probe, probe_collect, topology
from tesson.topology.render import render_text
from tests import dumps, sysfs_builder


@pytest.fixture
def dump(request, tmp_path_factory):
    return dumps.unpack(request.param, tmp_path_factory)


def shipped(root, tmp_path) -> str:
    """What a probe on the machine under ``root`` would ship, unpacked as tesson.probe does."""
    answer = probe_collect.collect(host_sys=f"{root}/sys", rest=str(root))
    dest = tmp_path / "answer"
    probe.unpack(answer, str(dest))
    return str(dest)


def same_everything(a: str, b: str) -> None:
    ta, tb = topology.read(a), topology.read(b)
    assert ta.to_json() == tb.to_json()
    assert render_text(ta) == render_text(tb)
    for unit in ("pu", "core", "l3", "numa", "package"):
        if not placement.units_of(ta, unit):
            assert not placement.units_of(tb, unit)
            continue
        pa = [(s.cpus, s.mems) for s in placement.plan(ta, unit)]
        assert pa == [(s.cpus, s.mems) for s in placement.plan(tb, unit)], unit
    iso_a, iso_b = topology.read(a, include_isolated=False), topology.read(b, include_isolated=False)
    assert iso_a.to_json() == iso_b.to_json()


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_the_answer_reads_back_as_the_same_topology_on_every_dump(dump, tmp_path):
    """Plans, trees, devices and ids from the shipped files equal those read on the machine itself."""
    same_everything(str(dump), shipped(dump, tmp_path))


def test_the_answer_holds_only_what_the_reader_read(tmp_path):
    root = sysfs_builder.build(tmp_path / "m", packages=2, cores=2, threads=2, isolated=[3], cgroup="v1",
                               cgroup_cpus=[0, 1, 2, 3, 4, 5])
    (root / "sys/devices/system/cpu/cpu0/cpufreq").mkdir(parents=True, exist_ok=True)
    (root / "sys/devices/system/cpu/cpu0/cpufreq/secret").write_text("not read\n")
    answer = probe_collect.collect(host_sys=f"{root}/sys", rest=str(root))
    with tarfile.open(fileobj=io.BytesIO(answer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        meta = json.loads(tar.extractfile(probe_collect.META).read())
        iso = tar.extractfile("sys/devices/system/cpu/isolated").read()
    assert "sys/devices/system/cpu/cpu0/cpufreq/secret" not in members  # listed folders hold stubs at most
    assert iso.strip() == b"3"
    assert meta["version"] and meta["arch"] and meta["paths"] > 10
    same_everything(str(root), shipped(root, tmp_path))


def test_same_machine_needs_name_kernel_cpus_and_memory_equal():
    here = {"Name": "box", "KernelVersion": "6.1.0", "NCPU": 8, "MemTotal": 1 << 34}
    assert probe.compare(dict(here, ID="x", OperatingSystem="Docker Desktop"), here) == []
    for key, other in (("Name", "box2"), ("KernelVersion", "6.6.12-linuxkit"), ("NCPU", 4), ("MemTotal", 1 << 33)):
        diff = probe.compare(dict(here, **{key: other}), here)
        assert len(diff) == 1 and repr(other) in diff[0]
    assert probe.compare({}, here)  # a daemon that says nothing is not taken for this machine


def test_cache_key_and_validity_rule():
    info = {"ID": "AB:CD", "Name": "box", "KernelVersion": "6.1", "NCPU": 8, "MemTotal": 1 << 34}
    key = probe.cache_key(info, "bridge-1")
    stored = dict(key, boot_id="b-1", made="then")
    assert probe.entry_valid(stored, probe.cache_key(info, "bridge-1"))
    assert not probe.entry_valid(stored, probe.cache_key(info, "bridge-2"))  # the daemon (re)started: a reboot
    assert not probe.entry_valid(stored, probe.cache_key(dict(info, NCPU=6), "bridge-1"))  # CPUs changed
    assert not probe.entry_valid(stored, probe.cache_key(dict(info, KernelVersion="6.2"), "bridge-1"))
    assert probe.cache_key(info, None) is None  # no default bridge: never cached
    assert not probe.entry_valid(stored, None)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TESSON_CACHE_DIR", str(tmp_path / "c"))
    assert probe.cache_dir() == str(tmp_path / "c" / "probe")
    monkeypatch.delenv("TESSON_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert probe.cache_dir() == str(tmp_path / "x" / "tesson" / "probe")


def test_fsroot_wins_and_asks_no_daemon(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")  # TEST-NET: never reached
    src = probe.source("/srv/box", True, force=True)
    assert (src.kind, src.fsroot) == ("fsroot", "/srv/box")


def test_without_docker_host_a_dry_run_reads_this_machine_without_asking(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("TESSON_PROBE", raising=False)
    src = probe.source("/", False)
    assert (src.kind, src.fsroot) == ("local", "/")
