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


# ---- repair, scale, update: where the shards are now ----------------------------------------------------

TWO = dict(packages=1, cores=2, threads=1)  # this test machine's shape: CPUs 0 and 1, one NUMA node


@pytest.fixture(scope="module")
def two_root(tmp_path_factory):
    return str(sysfs_builder.build(tmp_path_factory.mktemp("two"), **TWO))


def _spec(topo, name, shards, **kw):
    from tesson.group import Spec

    return Spec(name, "img", [], [], {}, kw.pop("unit", "pu"), list(shards), machine=holdings.machine_id(topo), **kw)


def _summary(labels, index, state="running", cpus=None):
    return {"Id": f"{name_of(labels)}{index}".ljust(64, "0"), "Names": [f"/{name_of(labels)}-{index}"], "State": state,
            "Status": state, "Ports": [], "ImageID": "sha256:a",
            "Labels": {**labels, L.ROLE: L.ROLE_SHARD, L.SHARD: str(index), L.CPUS: cpus or "", L.MEMS: "0"}}


def name_of(labels):
    return labels[L.GROUP]


def _pool_after_exclusive_took_cpu1(topo):
    """A shared 2-shard -u pu group (run on CPUs 0 and 1), an exclusive group that took CPU 1 since."""
    web = _spec(topo, "web", placement.plan(topo, "pu", 2))
    ex = _spec(topo, "db", [placement.Shard(0, (1,), (0,))], exclusive="packed")
    listing = [_summary(web.labels(), 0, cpus="0"), _summary(web.labels(), 1, cpus="1"),
               _summary(ex.labels(), 0, cpus="1")]
    return web, ex, listing


def test_replan_puts_a_shared_group_where_the_pool_has_it_now(two_root):
    topo = topology.read(two_root)
    web, ex, listing = _pool_after_exclusive_took_cpu1(topo)
    claims = holdings.claims_from_containers(listing, topo)
    me = holdings.mark_foreign(topo, holdings.claim_from_labels(web.labels()), web.labels())
    shards, lims, moves = sharing.replan(topo, claims, me)
    assert [s.cpus for s in shards] == [(0,), (0,)] and lims == [] and moves == []
    # scale to 3 over the same pool: every shard on CPU 0, never on the exclusive CPU 1
    shards, _, _ = sharing.replan(topo, claims, me, 3)
    assert [s.cpus for s in shards] == [(0,), (0,), (0,)]
    # the exclusive group gone, the pool is the machine again: the label plan
    alone = holdings.claims_from_containers(listing[:2], topo)
    assert sharing.replan(topo, alone, me)[0] == list(web.shards)


def test_repair_plan_recreates_a_repinned_shard_on_the_pool_not_its_label_plan(two_root):
    """Shard 1 was re-pinned live from CPU 1 to CPU 0 (its labels still say 1), then died: repair
    recreates it on CPU 0; shard 0 stays. Planned from the labels alone it would land on CPU 1."""

    from tesson import group as G
    from tesson.runtime import plan as P

    topo = topology.read(two_root)
    web, ex, listing = _pool_after_exclusive_took_cpu1(topo)
    grp = G._from_containers("web", [listing[0], dict(listing[1], State="dead", Status="dead")])
    assert [s.shard.cpus for s in P.plan_repair(grp).steps] == [(0,), (1,)]  # the stale label plan
    me = holdings.mark_foreign(topo, holdings.claim_from_labels(grp.labels), grp.labels)
    shards, lims, _ = sharing.replan(topo, holdings.claims_from_containers(listing, topo), me)
    want = grp.spec._replace(shards=shards)
    grp.shards[1].cpus = [0]  # read_pins: what its container has
    plan = P.plan(grp, want)
    assert [(s.action, s.shard.cpus) for s in plan.steps] == [("keep", (0,)), ("recreate", (0,))]
    # a live shard whose true pins are the pool's is kept; one still on the exclusive CPU is moved off it
    grp2 = G._from_containers("web", listing[:2])
    grp2.shards[1].cpus = [1]
    assert [(s.action, s.shard.cpus) for s in P.plan(grp2, want).steps] == [("keep", (0,)), ("repin", (0,))]


def test_replan_of_an_exclusive_group_keeps_its_shards_and_packs_more(tmp_path_factory):
    root = str(sysfs_builder.build(tmp_path_factory.mktemp("ex"), packages=2, cores=4, threads=1))
    topo = topology.read(root)
    db = _spec(topo, "db", [placement.Shard(0, (4,), (1,)), placement.Shard(1, (5,), (1,))], exclusive="packed", unit="core")
    web = _spec(topo, "web", placement.plan(topo, "core", 2))
    listing = [_summary(db.labels(), i) for i in range(2)] + [_summary(web.labels(), i) for i in range(2)]
    claims = holdings.claims_from_containers(listing, topo)
    me = holdings.mark_foreign(topo, holdings.claim_from_labels(db.labels()), db.labels())
    shards, _, moves = sharing.replan(topo, claims, me, 4)
    assert [s.cpus for s in shards[:2]] == [(4,), (5,)] and [s.index for s in shards] == [0, 1, 2, 3]
    assert {c for s in shards[2:] for c in s.cpus} == {6, 7}  # packed: the rest of db's package
    assert moves and all(m.group == "web" and not set(m.cpus) & {4, 5, 6, 7} for m in moves)
    # down to 1: the surplus goes, the shared group gets CPU 5 back
    shards, _, back = sharing.replan(topo, claims, me, 1)
    assert [s.cpus for s in shards] == [(4,)]
    assert {c for m in back for c in m.cpus} >= {5}
    with pytest.raises(TessonError, match=r"exclusive group db: 7 more core units asked for, 6 free .*at most 8"):
        sharing.replan(topo, claims, me, 9)
    with pytest.raises(TessonError, match=r"8 shards would leave shared group web without any CPU \(nothing was changed\)"):
        sharing.replan(topo, claims, me, 8)


def test_claims_take_the_newest_spec_record(two_root):
    topo = topology.read(two_root)
    web = _spec(topo, "web", placement.plan(topo, "pu", 2))
    scaled = _spec(topo, "web", placement.plan(topo, "pu", 3))
    record = {"Id": "r", "Labels": {**scaled.labels(), L.ROLE: L.ROLE_SPEC, L.GENERATION: "2"}}
    older = {"Id": "q", "Labels": {**web.labels(), L.ROLE: L.ROLE_SPEC, L.GENERATION: "1"}}
    (c,) = holdings.claims_from_containers([_summary(web.labels(), 0), older, record, _summary(web.labels(), 1)], topo)
    assert c.size == 3 and c.containers == {0: [_summary(web.labels(), 0)["Id"]], 1: [_summary(web.labels(), 1)["Id"]]}


# ---- 'auto' limits follow the CPUs ------------------------------------------------------------------------


def test_auto_keys_and_follow(two_root):
    from tesson import quotas

    topo = topology.read(two_root)
    q = quotas.Quotas.parse("auto", "auto", "auto")
    assert quotas.auto_keys(q) == ["Memory", "MemoryReservation", "CpuShares"]
    assert quotas.auto_keys(q, {"HostConfig": {"Memory": 1 << 30}}) == ["MemoryReservation", "CpuShares"]
    assert quotas.auto_keys(quotas.Quotas.parse("1g", None, "auto")) == ["CpuShares"] and quotas.auto_keys(None) == []
    both = placement.Shard(0, (0, 1), (0,))
    one = placement.Shard(0, (1,), (0,))
    (was,) = quotas.limits(topo, [both], q)
    (now,) = quotas.follow(topo, [one], quotas.auto_keys(q), [was])
    assert now["CpuShares"] == 1024 and was["CpuShares"] == 2048
    assert now["Memory"] == now["MemoryReservation"] == quotas.auto_memory(topo, (1,), (0,)) < was["Memory"]
    # fixed values stay; a shard a scale adds takes shard 0's; the reservation never tops the limit
    fixed = quotas.limits(topo, [both], quotas.Quotas.parse("64m", "auto", None))
    assert fixed == [{"Memory": 64 << 20, "MemoryReservation": 64 << 20}]
    got = quotas.follow(topo, [one, placement.Shard(1, (0,), (0,))], ["MemoryReservation"], fixed)
    assert got == [{"Memory": 64 << 20, "MemoryReservation": 64 << 20}] * 2


def test_update_body_sends_limit_swap_and_reservation_together():
    from tesson import quotas

    mib = quotas.MIB
    made = {"Memory": 100 * mib, "MemorySwap": 200 * mib, "MemoryReservation": 100 * mib, "CpuShares": 2048}
    # Docker's default swap (twice the limit) stays twice the new limit, up or down
    assert quotas.update_body(made, {"Memory": 300 * mib, "MemoryReservation": 300 * mib}) == {
        "Memory": 300 * mib, "MemoryReservation": 300 * mib, "MemorySwap": 600 * mib}
    assert quotas.update_body(made, {"Memory": 50 * mib, "CpuShares": 1024}) == {
        "Memory": 50 * mib, "CpuShares": 1024, "MemorySwap": 100 * mib, "MemoryReservation": 50 * mib}
    # no swap (swap limit = limit) stays none; unlimited swap (-1) is not touched
    assert quotas.update_body({"Memory": 100 * mib, "MemorySwap": 100 * mib}, {"Memory": 80 * mib})["MemorySwap"] == 80 * mib
    assert "MemorySwap" not in quotas.update_body({"Memory": 100 * mib, "MemorySwap": -1}, {"Memory": 80 * mib})
    # a reservation alone is held to the limit the container keeps (a config's own limit)
    assert quotas.update_body({"Memory": 64 * mib, "MemorySwap": 128 * mib}, {"MemoryReservation": 900 * mib}) == {
        "MemoryReservation": 64 * mib}
    # an 'auto' limit that shrinks below a fixed reservation (--memory auto --memory-reservation
    # 90m): the reservation comes down with it in the same update, else Docker refuses the update
    assert quotas.update_body(made, {"Memory": 60 * mib}) == {
        "Memory": 60 * mib, "MemorySwap": 120 * mib, "MemoryReservation": 60 * mib}
    assert quotas.update_body(made, {"Memory": 150 * mib}) == {"Memory": 150 * mib, "MemorySwap": 300 * mib}
    # the undo puts back everything the update may touch
    assert quotas.current(made, ["Memory", "CpuShares"]) == {
        "Memory": 100 * mib, "CpuShares": 2048, "MemorySwap": 200 * mib, "MemoryReservation": 100 * mib}


def test_moves_carry_the_auto_limits_and_the_plan_repins_for_limits(two_root):

    from tesson import group as G
    from tesson import quotas
    from tesson.runtime import plan as P

    topo = topology.read(two_root)
    q = quotas.Quotas.parse("auto", None, "auto")
    shards = placement.plan(topo, "package", 1)  # one shard on CPUs 0-1
    web = _spec(topo, "web", shards, unit="package", limits=quotas.limits(topo, shards, q),
                limits_auto=quotas.auto_keys(q))
    assert json.loads(web.labels()[L.LIMITS_AUTO]) == ["Memory", "CpuShares"]
    claim = holdings.claim_from_labels(web.labels())
    assert claim.limits_auto == ["Memory", "CpuShares"]
    claim.containers = {0: ["c0"]}
    ex = _claim("db", [((0,), (0,))], exclusive="packed")
    (m,) = holdings.moves(topo, [claim], [claim, ex])
    assert m.cpus == (1,) and m.limits == {"Memory": quotas.auto_memory(topo, (1,), (0,)), "CpuShares": 1024}
    # back on both CPUs: the plan sees its container's limits are the one-CPU ones, and re-pins for them
    grp = G._from_containers("web", [_summary(web.labels(), 0, cpus="0-1")])
    grp.shards[0].limits = {"Memory": m.limits["Memory"], "MemoryReservation": 0, "CpuShares": 1024}
    (step,) = P.plan(grp, web).steps
    assert step.action == "repin" and "limits" in step.reason
    grp.shards[0].limits = dict(web.limits[0], MemoryReservation=0)
    assert P.plan(grp, web).steps[0].action == "keep"
    assert grp.limits_of(0) == web.limits[0]
    # without auto limits nothing follows
    plain = web._replace(limits_auto=[])
    grp.shards[0].limits = {"Memory": 1, "CpuShares": 2}
    assert P.plan(grp, plain).steps[0].action == "keep" and grp.limits_of(0) == {"Memory": 1, "CpuShares": 2}


def test_dry_run_shows_the_limits_a_repin_gives(two_root):
    import io

    from tesson import quotas
    from tesson.commands.run import print_plan
    from tesson.request import Placement

    topo = topology.read(two_root)
    q = quotas.Quotas.parse("auto", None, "auto")
    shards = placement.plan(topo, "package", 1)
    web = _spec(topo, "web", shards, unit="package", limits=quotas.limits(topo, shards, q), limits_auto=quotas.auto_keys(q))
    claims = holdings.claims_from_containers([_summary(web.labels(), 0, cpus="0-1")], topo)
    p = sharing.place(Placement("db", "img", "core", topo, (), exclusive="packed", size_asked=1), claims)
    (m,) = p.repins
    out = io.StringIO()
    print_plan(p, "json", out)
    (doc,) = json.loads(out.getvalue())["repins"]
    assert doc["to"] == [1] and doc["limits"] == {"Memory": quotas.auto_memory(topo, (1,), (0,)), "CpuShares": 1024}
    out = io.StringIO()
    print_plan(p, "text", out)
    assert f"re-pin: web-0 (shared group web) 0-1 -> 1, limits mem={quotas.format_size(doc['limits']['Memory'])} shares=1024" \
        in out.getvalue()
