"""The converge plan (pure) for repair, scale and update, the group's spec record and lock as read
from labels, and the drain's connection count: no Docker."""

from __future__ import annotations

import json

import pytest

from tesson import group as G
from tesson import labels as L
from tesson.cli import parse
from tesson.placement import Shard
from tesson.runtime import plan as P
from tesson.runtime.converge import line_order
from tesson.runtime.drain import open_connections


def spec(n: int, cpus=None, image: str = "web:1", **kw) -> G.Spec:
    cpus = cpus or [[i] for i in range(n)]
    shards = [Shard(index=i, cpus=tuple(c), mems=(0,)) for i, c in enumerate(cpus)]
    return G.Spec("web", image, [], ["80"], {}, "core", shards, "nginx", **kw)


def summary(labels: dict, index: int, state: str = "running", name: str | None = None, cpus: str | None = None,
            image_id: str = "sha256:a", cid: str | None = None) -> dict:
    return {"Id": cid or f"{index}" * 64, "Names": [f"/{name or f'web-{index}'}"], "State": state, "Status": state,
            "Ports": [], "ImageID": image_id,
            "Labels": {**labels, L.ROLE: "shard", L.SHARD: str(index), L.CPUS: cpus or str(index), L.MEMS: "0"}}


def group_of(s: G.Spec, *found: tuple, extra: list[dict] = ()) -> G.Group:
    """``found``: (index, state) or (index, state, overrides for :func:`summary`)."""
    labels = s.labels()
    sums = [summary(labels, f[0], f[1], **(f[2] if len(f) > 2 else {})) for f in found]
    return G._from_containers("web", sums + list(extra))


def actions(plan: P.Plan) -> list[tuple]:
    return [(s.index, s.action) for s in plan.steps]


def test_repair_plan_is_the_converge_plan_towards_the_groups_own_spec():
    grp = group_of(spec(4), (0, "running"), (1, "exited"), (2, "dead"), (3, "paused"))
    assert actions(P.plan_repair(grp)) == [(0, "keep"), (1, "restart"), (2, "recreate"), (3, "leave")]
    assert P.plan_repair(grp).summary() == "1 restart, 1 recreate"


def test_scale_up_keeps_repins_and_creates_in_the_executors_order():
    grp = group_of(spec(2), (0, "running"), (1, "running"))
    want = spec(4, cpus=[[0], [0], [1], [1]])
    plan = P.plan(grp, want)
    assert actions(plan) == [(0, "keep"), (1, "repin"), (2, "create"), (3, "create")]
    repin = plan.with_action("repin")[0]
    assert repin.cpus == (1,) and repin.shard.cpus == (0,) and repin.container_id == "1" * 64
    # capacity first: the new shards are up (and in the door) before the kept one moves
    assert [s.action for s in plan.work] == ["create", "create", "repin"]


def test_scale_down_removes_every_container_beyond_the_plan_and_repins_the_rest():
    grp = group_of(spec(4, cpus=[[0], [0], [1], [1]]), (0, "running", {"cpus": "0"}), (1, "running", {"cpus": "0"}),
                   (2, "running", {"cpus": "1"}), (3, "exited", {"cpus": "1"}))
    plan = P.plan(grp, spec(2))
    assert actions(plan) == [(0, "keep"), (1, "repin"), (2, "remove"), (3, "remove")]
    assert [s.action for s in plan.work] == ["remove", "remove", "repin"]
    assert plan.with_action("remove")[1].container_id == "3" * 64


def test_a_scale_cut_short_is_finished_by_repair_once_the_record_says_the_new_size():
    # the record says 2 shards, a third is still there (extra) and shard 1 still on its old CPU
    s2 = spec(2, cpus=[[0], [0]])
    labels = s2.labels()
    grp = G._from_containers("web", [summary(labels, 0, cpus="0"), summary(labels, 1, cpus="1"),
                                     summary(spec(3).labels(), 2, cpus="1")])
    assert grp.size == 2 and [e.index for e in grp.extra] == [2]
    assert actions(P.plan_repair(grp)) == [(0, "keep"), (1, "repin"), (2, "remove")]


def test_update_replaces_outdated_shards_that_are_up_and_recreates_stopped_ones():
    old = spec(4)
    grp = group_of(old, (0, "running"), (1, "exited"), (2, "paused"), (3, "missing"))
    new = old._replace(image="web:2")
    assert actions(P.plan(grp, new, update=True)) == [(0, "replace"), (1, "recreate"), (2, "leave"), (3, "recreate")]
    # without update (a repair), versions are not compared
    assert actions(P.plan(grp, new)) == [(0, "keep"), (1, "restart"), (2, "leave"), (3, "recreate")]


def test_update_to_the_same_tag_replaces_what_runs_another_build_of_it():
    s = spec(2)
    grp = group_of(s, (0, "running", {"image_id": "sha256:new"}), (1, "running", {"image_id": "sha256:old"}))
    assert actions(P.plan(grp, s, image_id="sha256:new", update=True)) == [(0, "keep"), (1, "replace")]
    assert actions(P.plan(grp, s, update=True)) == [(0, "keep"), (1, "keep")]


def test_config_command_or_env_changes_make_a_shard_outdated():
    s = spec(1)
    grp = group_of(s, (0, "running"))
    for change in ({"command": ["sh"]}, {"config": {"Env": ["A=1"]}}):
        assert actions(P.plan(grp, s._replace(**change), update=True)) == [(0, "replace")]


def test_a_rolling_step_cut_short_is_finished_or_undone():
    s = spec(3)
    labels = s.labels()
    prev = [summary(labels, i, "exited", name=f"web-{i}.prev", cid=f"p{i}" * 32) for i in (0, 1, 2)]
    grp = G._from_containers("web", [summary(labels, 0, "running"), summary(labels, 1, "created")] + prev)
    assert sorted(grp.previous) == [0, 1, 2] and not grp.extra
    plan = P.plan_repair(grp)
    assert actions(plan) == [(0, "finish"), (1, "restore"), (2, "restore")]
    assert plan.steps[0].previous_id == "p0" * 32 and plan.steps[1].container_id == "1" * 64
    assert plan.steps[2].container_id == "" and "web-2.prev" in plan.steps[2].reason
    assert [s.action for s in plan.work][:3] == ["finish", "restore", "restore"]
    assert grp.container_ids().count("p1" * 32) == 1  # stop --purge removes them too


def test_the_newest_spec_record_is_the_groups_spec_and_a_lock_is_a_change_under_way():
    old, new = spec(2), spec(2)._replace(image="web:2")
    rec = lambda s, gen: {"Id": f"r{gen}" * 32, "Names": [f"/web-spec.{gen}"], "State": "created",
                          "Labels": {**s.labels(), L.ROLE: "spec", L.GENERATION: str(gen)}}
    change = {"verb": "update", "image": "web:2", "old_image": "web:1", "by": "me@here", "pid": 1, "since": 0}
    lock = {"Id": "l" * 64, "Names": ["/web-lock"], "State": "created",
            "Labels": {**old.labels(), L.ROLE: "lock", L.CHANGE: json.dumps(change)}}
    shards = [summary(new.labels(), 0), summary(old.labels(), 1)]
    grp = G._from_containers("web", shards + [rec(old, 1), rec(new, 2), lock])
    assert grp.image == "web:2" and grp.spec.image == "web:2" and [r.name for r in grp.records] == ["web-spec.2", "web-spec.1"]
    assert grp.outdated() == [1]
    assert grp.change["old_image"] == "web:1"
    assert grp.status == "updating 1/2, running 2/2"
    grp = G._from_containers("web", shards + [rec(old, 3), rec(new, 2)])
    assert grp.image == "web:1" and grp.change is None and grp.status == "running 2/2, 1 not on the group's spec"
    scale = {**lock, "Labels": {**lock["Labels"], L.CHANGE: json.dumps({"verb": "scale", "from": 2, "to": 4})}}
    grp = G._from_containers("web", [summary(old.labels(), 0), summary(old.labels(), 1), scale])
    assert grp.status == "scaling 2->4, running 2/2"


def test_a_group_without_a_spec_has_no_plan():
    grp = G._from_containers("web", [{"Id": "0" * 64, "Names": ["/web-0"], "State": "exited",
                                      "Labels": {L.GROUP: "web", L.ROLE: "shard", L.SHARD: "0"}}])
    with pytest.raises(ValueError):
        P.plan(grp)


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0200120A:1F90 0300120A:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0200120A:1F90 0300120A:D2C6 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0200120A:9C40 0500120A:0CEA 01 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: 0200120A:1F90 0300120A:D2C8 06 00000000:00000000 00:00000000 00000000     0        0 5 1
"""


def test_the_drain_counts_only_connections_accepted_by_a_listening_port(tmp_path):
    (tmp_path / "42" / "net").mkdir(parents=True)
    (tmp_path / "42" / "net" / "tcp").write_text(TCP)
    # two ESTABLISHED on :8080 (listening); the outgoing one to :3306 and the TIME_WAIT do not count
    assert open_connections(42, root=str(tmp_path)) == 2
    assert open_connections(43, root=str(tmp_path)) is None


TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9 1
   1: 0000000000000000FFFF00000200120A:1F90 0000000000000000FFFF00000300120A:D2D0 03 00000000:00000000 00:00000000 00000000     0        0 10 1
   2: 0000000000000000FFFF00000200120A:1F90 0000000000000000FFFF00000300120A:D2D2 08 00000000:00000000 00:00000000 00000000     0        0 11 1
   3: 0000000000000000FFFF00000200120A:1F90 0000000000000000FFFF00000300120A:D2D4 04 00000000:00000000 00:00000000 00000000     0        0 12 1
"""


def test_the_drain_also_counts_handshakes_and_half_closed_connections_over_ipv6(tmp_path):
    (tmp_path / "42" / "net").mkdir(parents=True)
    (tmp_path / "42" / "net" / "tcp").write_text(TCP)
    (tmp_path / "42" / "net" / "tcp6").write_text(TCP6)
    # the two ESTABLISHED of tcp, then a SYN_RECV and a CLOSE_WAIT on [::]:8080; not the FIN_WAIT1
    assert open_connections(42, root=str(tmp_path)) == 4


def test_scale_and_update_command_lines():
    from tesson.cli import _resolve_group, build_parser

    def parsed(argv):
        parser = build_parser()
        args = parse(argv, parser)
        _resolve_group(args, parser.verb_parsers[args.verb])
        return args

    a = parsed(["scale", "-g", "web", "-n", "4"])
    assert (a.group, a.size, a.drain_timeout, a.time) == ("web", 4, 3.0, 10)
    assert parsed(["scale", "web", "-n", "4"]).group == "web"
    a = parsed(["update", "-g", "web", "--image", "web:2", "--parallel", "2", "--rollback", "all", "-e", "A=1", "sh", "-c", "x"])
    assert (a.image, a.parallel, a.rollback, a.env, a.command) == ("web:2", 2, "all", ["A=1"], ["sh", "-c", "x"])


@pytest.mark.parametrize("argv", [["scale", "-g", "web", "-n", "0"], ["scale", "-g", "web", "-n", "-2"],
                                  ["scale", "-g", "web"], ["update", "-g", "web", "--parallel", "0"],
                                  ["scale", "-g", "web", "-n", "2", "--drain-timeout", "-1"]])
def test_bad_scale_and_update_options_are_usage_errors(argv, capsys):
    from tesson.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_update_env_sets_variables_in_the_config_and_refuses_a_bad_one():
    from tesson.commands.update import new_config
    from tesson.errors import UsageError

    s = spec(1)._replace(config={"Env": ["A=0", "B=1"], "User": "1"})
    assert new_config(s, None, ["A=2", "C=3"]) == {"Env": ["A=2", "B=1", "C=3"], "User": "1"}
    assert s.config["Env"] == ["A=0", "B=1"]
    with pytest.raises(UsageError):
        new_config(s, None, ["NOEQUALS"])


def test_lines_sort_by_shard_index():
    assert sorted(["removed web-10", "created web-2", "note"], key=line_order) == ["created web-2", "removed web-10", "note"]


class ClosedDoor:
    """A front door that refuses every change (a kernel door whose agent is down), and records what
    it was asked."""

    kind = "kernel"
    removal_lag = 0.0

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[int]]] = []

    def _refuse(self, hook: str, indexes: list[int]) -> None:
        from tesson.errors import TessonError

        self.asked.append((hook, list(indexes)))
        raise TessonError("kernel agent web-lb is not running")

    def hold_backends(self, ctx, indexes):
        self._refuse("hold", indexes)

    def remove_backends(self, ctx, indexes):
        self._refuse("remove", indexes)

    def after_start(self, ctx, indexes):
        self.asked.append(("after_start", list(indexes)))

    def repair(self, ctx, recreated):
        return []


class OnlyLists:
    """A daemon that only lists containers: any other call (create, start, stop, remove) fails the test."""

    def __init__(self, found: list[dict]) -> None:
        self.found = found

    def containers(self, **_kw):
        return list(self.found)

    def __getattr__(self, name):
        raise AssertionError(f"the executor called the daemon's {name}")


def test_a_door_that_refuses_to_hold_new_shards_means_none_is_created():
    from tesson import frontend
    from tesson.runtime import converge

    grp = group_of(spec(2), (0, "running"), (1, "running"))
    want = spec(3)
    plan = P.plan(grp, want)
    assert actions(plan) == [(0, "keep"), (1, "keep"), (2, "create")]
    door = ClosedDoor()
    ctx = frontend.Context.for_group(grp, OnlyLists([]), spec=want)
    with pytest.raises(converge.TessonError, match=r"cannot keep new shards web-2 out .*nothing changed: kernel agent"):
        converge.hold(ctx, door, plan)
    assert not ctx.draining and door.asked == [("hold", [2])]
    out = converge.execute(ctx, door, plan)  # the executor alone (repair of a scale cut short): no create either
    assert out.failed == ["web-2 (not created: the front door could not hold it out until it is healthy)"]
    assert not out.lines and not ctx.draining and door.asked[-1] == ("hold", [2])
    assert "kernel front door, hold backends web-2: kernel agent web-lb is not running" == out.fe_error


def test_surplus_shards_a_door_will_not_take_out_stay_and_are_named():
    from tesson import frontend
    from tesson.runtime import converge

    grp = group_of(spec(3), (0, "running"), (1, "running"), (2, "running"))
    plan = P.plan(grp, spec(1))
    assert actions(plan) == [(0, "keep"), (1, "remove"), (2, "remove")]
    door = ClosedDoor()
    out = converge.execute(frontend.Context.for_group(grp, OnlyLists([]), spec=spec(1)), door, plan)
    assert out.unremoved == [1, 2] and not out.lines and door.asked == [("remove", [1, 2])]
    assert out.failed == [f"web-{i} (not removed: it could not be taken out of the front door first)" for i in (1, 2)]


def test_a_hold_is_let_go_when_the_change_fails_before_the_executor():
    from tesson import frontend
    from tesson.runtime import converge

    class OpenDoor(ClosedDoor):
        def hold_backends(self, ctx, indexes):
            self.asked.append(("hold", sorted(ctx.draining)))

    grp = group_of(spec(2), (0, "running"), (1, "running"))
    plan = P.plan(grp, spec(4))
    door = OpenDoor()
    ctx = frontend.Context.for_group(grp, OnlyLists([]), spec=spec(4))
    converge.hold(ctx, door, plan)
    assert ctx.draining == {2, 3}
    converge.let_go(ctx, door, plan)  # e.g. the spec record could not be written
    assert not ctx.draining and door.asked == [("hold", [2, 3]), ("hold", [])]  # the door holds nothing now
    converge.let_go(ctx, door, plan)
    assert len(door.asked) == 2  # nothing held: nothing to let go
