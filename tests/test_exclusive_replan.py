"""Planning a group again where it stands now (pure): run --no-isolated recorded and honoured by
every later plan, shared shards re-planned over the pool for repair, scale and update, and 'auto'
limits that follow a shard's CPUs. No Docker."""

from __future__ import annotations

import json

import pytest

from tesson import holdings, placement, sharing, topology
from tesson import labels as L
from tesson.commands.run import make_plan
from tesson.cpulist import bits, mask_of
from tesson.errors import TessonError
from tests import sysfs_builder
from tests.conftest import tesson_cmd

ISOLATED = [0, 8, 3]  # 2 packages x 4 cores x 2 threads: CPUs 0-15, siblings c and c+8


@pytest.fixture(scope="module")
def iso_root(tmp_path_factory):
    return str(sysfs_builder.build(tmp_path_factory.mktemp("iso"), packages=2, cores=4, threads=2, isolated=ISOLATED))


def _claim(name, shards, exclusive="", unit="core", restrict=None, no_isolated=False):
    return holdings.Claim(name, exclusive, unit, restrict,
                          [placement.Shard(i, tuple(c), tuple(m)) for i, (c, m) in enumerate(shards)],
                          no_isolated=no_isolated)


# ---- --no-isolated: one more mask, recorded ----------------------------------------------------------


def test_topology_knows_its_isolated_cpus_whether_or_not_it_keeps_them(iso_root):
    whole = topology.read(iso_root)
    assert bits(whole.isolated) == sorted(ISOLATED) and whole.pus == list(range(16))
    without = topology.read(iso_root, include_isolated=False)
    assert bits(without.isolated) == sorted(ISOLATED) and not without.cpuset & without.isolated


@pytest.mark.parametrize("unit", ["pu", "core", "l3", "package", "numa"])
def test_no_isolated_as_a_mask_plans_what_the_restricted_topology_plans(iso_root, unit):
    """The group's plan is unchanged by reading the topology whole: hwloc-distrib --restrict over the
    CPUs not isolated equals hwloc on the topology restricted to them (tests/test_topology.py checks
    the latter against hwloc itself)."""
    without = topology.read(iso_root, include_isolated=False)
    for n in (None, 1, 2, 3, 5, 7, 13):
        want = placement.plan(without, unit, n)
        got = make_plan("g", "img", iso_root, False, unit, n)
        assert got.no_isolated and got.restrict is None
        assert [(s.cpus, s.mems) for s in got.shards] == [(s.cpus, s.mems) for s in want], (unit, n)
        assert not mask_of([c for s in got.shards for c in s.cpus]) & mask_of(ISOLATED)


def test_no_isolated_is_in_the_labels_and_back(iso_root):
    from tesson.group import Spec

    p = make_plan("g", "img", iso_root, False, "core", 2)
    spec = Spec("g", "img", [], [], {}, "core", list(p.shards), no_isolated=p.no_isolated)
    labels = spec.labels()
    assert labels[L.NO_ISOLATED] == "1" and L.NO_ISOLATED not in Spec("g", "img", [], [], {}, "core", list(p.shards)).labels()
    assert Spec.from_labels(labels).no_isolated
    claim = holdings.claim_from_labels(labels)
    assert claim.no_isolated


def test_the_pool_replans_a_no_isolated_group_without_isolated_cpus(iso_root):
    """An exclusive group (run without --no-isolated) takes package 1: the shared --no-isolated group is
    re-pinned onto package 0 less its isolated CPUs (0, 3, 8), the plain shared group onto all of it."""
    topo = topology.read(iso_root)
    quiet = _claim("quiet", [(s.cpus, s.mems) for s in make_plan("quiet", "i", iso_root, False, "pu", 4).shards],
                   unit="pu", no_isolated=True)
    plain = _claim("plain", [(s.cpus, s.mems) for s in placement.plan(topo, "pu", 4)], unit="pu")
    pkg0 = topo.packages[1].cpuset
    ex = _claim("db", [(bits(pkg0), topo.mems_for(pkg0))], exclusive="packed", unit="package")
    now = holdings.effective(topo, [quiet, plain, ex])
    pool = topo.cpuset & ~pkg0
    assert [list(s.cpus) for s in now["quiet"]] == [list(s.cpus) for s in placement.plan(topo, "pu", 4, restrict=pool & ~topo.isolated)]
    assert [list(s.cpus) for s in now["plain"]] == [list(s.cpus) for s in placement.plan(topo, "pu", 4, restrict=pool)]
    assert not {c for s in now["quiet"] for c in s.cpus} & set(ISOLATED)
    assert {c for s in now["plain"] for c in s.cpus} & set(ISOLATED)
    for m in holdings.moves(topo, [quiet, plain], [quiet, plain, ex]):
        assert not mask_of(m.cpus) & pkg0 and (m.group != "quiet" or not mask_of(m.cpus) & topo.isolated)
    # run --exclusive --no-isolated: only units with no isolated CPU are free (core 0 and 3 are not)
    got = make_plan("x", "img", iso_root, False, "core", None, exclusive="packed")
    assert all(not mask_of(s.cpus) & topo.isolated for s in got.shards) and len(got.shards) == 6


def test_no_isolated_cpus_option_errors(iso_root):
    with pytest.raises(TessonError, match=r"CPU 3 is not allowed on this machine \(isolated, and --no-isolated"):
        make_plan("g", "img", iso_root, False, "core", None, cpus="2-3")
    assert make_plan("g", "img", iso_root, True, "core", None, cpus="2-3").restrict == mask_of([2, 3])


def test_dry_run_says_no_isolated(iso_root):
    r = tesson_cmd("--fsroot", iso_root, "--no-isolated", "run", "--dry-run", "--format", "json", "-u", "pu", "img")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["no_isolated"] is True and not {c for s in doc["shards"] for c in s["cpus"]} & set(ISOLATED)
    r = tesson_cmd("--fsroot", iso_root, "--no-isolated", "run", "--dry-run", "-u", "pu", "img")
    assert r.returncode == 0 and " no-isolated" in r.stdout.splitlines()[0], r.stdout
    plain = json.loads(tesson_cmd("--fsroot", iso_root, "run", "--dry-run", "--format", "json", "img").stdout)
    assert "no_isolated" not in plain


def test_sharing_place_keeps_the_flag_on_the_new_claim(iso_root):
    p = make_plan("g", "img", iso_root, False, "pu", 4)
    again = sharing.place(p, [])
    assert again.no_isolated and again.shards == p.shards
