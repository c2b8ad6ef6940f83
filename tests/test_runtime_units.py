"""The runtime's pure parts, no daemon: port specs, -c configs, create bodies, labels, rollback order,
frontend selection, the repair plan."""

from __future__ import annotations

import json

import pytest

from tesson import cli, config, frontend, ports, runtime
from tesson import group as G
from tesson import labels as L
from tesson.commands import run as run_cmd
from tesson.container import Container
from tesson.errors import TessonError, UsageError
from tesson.frontend.none import NoneFrontend
from tesson.placement import Shard
from tesson.request import FrontendOptions
from tests import sysfs_builder


def test_port_specs_as_docker_takes_them():
    got: dict = {}
    for p in ports.parse(["80", "8080:80/udp", "127.0.0.1::81", "8000-8001:90-91", "8100-8110:92"]):
        got.setdefault(p.spec, []).append((p.port, p.proto, p.host_ip, p.host_port))
    assert got == {
        "80": [(80, "tcp", "", "")],
        "8080:80/udp": [(80, "udp", "", "8080")],
        "127.0.0.1::81": [(81, "tcp", "127.0.0.1", "")],
        "8000-8001:90-91": [(90, "tcp", "", "8000"), (91, "tcp", "", "8001")],
        "8100-8110:92": [(92, "tcp", "", "8100-8110")],
    }


@pytest.mark.parametrize("spec", ["99999", "abc", "0", "70000:80", "80/xyz", "1.2.3:80:80", "", "9000-8000:80"])
def test_bad_port_specs_are_usage_errors_naming_the_spec(spec):
    with pytest.raises(UsageError) as e:
        ports.parse([spec])
    assert repr(spec) in str(e.value) and "\n" not in str(e.value)


def test_config_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "Env": ["A=1"],\n  "User": \n}\n')
    with pytest.raises(UsageError, match=r"bad\.json line 4 column 1: not valid JSON"):
        config.load(str(bad))
    pinned = tmp_path / "pinned.json"
    pinned.write_text('{\n "User": "1",\n "HostConfig": {\n   "Memory": 1,\n   "CpusetMems": "0"\n }\n}\n')
    with pytest.raises(UsageError, match=r"pinned\.json line 5: HostConfig\.CpusetMems is not allowed"):
        config.load(str(pinned))
    named = tmp_path / "named.json"
    named.write_text('{"name": "x"}')
    with pytest.raises(UsageError, match="name is not allowed"):
        config.load(str(named))
    for text, what in (("[1]", "JSON object"), ('{"Env": "A=1"}', "Env must be"), ('{"Labels": {"a": 1}}', "Labels")):
        f = tmp_path / "x.json"
        f.write_text(text)
        with pytest.raises(UsageError, match=what):
            config.load(str(f))
    with pytest.raises(UsageError, match="cannot read config"):
        config.load(str(tmp_path / "missing.json"))


def _ctx(cfg=None, command=(), specs=("8080",)):
    shards = [Shard(0, (0, 1), (0,)), Shard(1, (2, 3), (0, 1))]
    spec = G.Spec("web", "img:1", list(command), list(specs), cfg or {}, "core", shards, "none")
    return frontend.Context(
        group="web", docker=None, image="img:1", command=list(command), ports=ports.parse(list(specs)),
        shards=shards, unit="core", config=cfg or {}, labels={**spec.labels()},
    )


def test_shard_body_merges_config_under_tessons_fields():
    cfg = {
        "Env": ["FOO=bar", "TESSON_UID=99", "GOMAXPROCS=7"],
        "Labels": {"team": "a"},
        "Cmd": ["from-config"],
        "User": "65534",
        "HostConfig": {"Memory": 67108864, "PortBindings": {"9000/tcp": [{"HostPort": ""}]}},
    }
    ctx = _ctx(cfg)
    body = runtime.shard_body(ctx, NoneFrontend(), ctx.shards[1])
    assert body["Image"] == "img:1" and body["Cmd"] == ["from-config"] and body["User"] == "65534"
    env = dict(e.split("=", 1) for e in body["Env"])
    assert env == {"FOO": "bar", "TESSON_UID": "1", "GOMAXPROCS": "7", "TESSON_GROUP": "web",
                   "TESSON_CPUS": "2-3", "TESSON_NCPUS": "2"}
    assert body["Labels"]["team"] == "a" and body["Labels"][L.SHARD] == "1"
    assert body["Labels"][L.CPUS] == "2-3" and body["Labels"][L.MEMS] == "0-1" and body["Labels"][L.ROLE] == "shard"
    host = body["HostConfig"]
    assert host["CpusetCpus"] == "2-3" and host["CpusetMems"] == "0-1" and host["Memory"] == 67108864
    assert host["RestartPolicy"] == {"Name": "unless-stopped"}
    assert host["PortBindings"] == {"9000/tcp": [{"HostPort": ""}], "8080/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Env"][1] == "TESSON_UID=99", "the loaded config must not be changed in place"
    # the command line wins over the config's Cmd, and GOMAXPROCS defaults to the shard's CPUs
    ctx2 = _ctx({"HostConfig": {"RestartPolicy": {"Name": "no"}}}, command=["httpd", "-f", "-p", "8080"])
    body2 = runtime.shard_body(ctx2, NoneFrontend(), ctx2.shards[0])
    assert body2["Cmd"] == ["httpd", "-f", "-p", "8080"] and "GOMAXPROCS=2" in body2["Env"]
    assert body2["HostConfig"]["RestartPolicy"] == {"Name": "no"}


def test_spec_round_trips_through_labels():
    ctx = _ctx({"User": "1"}, command=["a", "b c"], specs=("80", "53/udp"))
    spec = G.Spec.from_labels(ctx.labels)
    assert spec.command == ["a", "b c"] and spec.port_specs == ["80", "53/udp"]
    # the config's values stay out of the labels (issue 10): its digest and field names round-trip
    assert spec.config is None and spec.config_fields == ["User"]
    assert spec.config_digest == config.digest({"User": "1"}) and spec.config_digest.startswith("sha256:")
    assert [(s.index, tuple(s.cpus), tuple(s.mems)) for s in spec.shards] == [(0, (0, 1), (0,)), (1, (2, 3), (0, 1))]
    assert all(isinstance(v, str) for v in ctx.labels.values())
    with pytest.raises(ValueError):
        G.Spec.from_labels({L.GROUP: "x"})


def test_group_rebuilt_from_container_summaries_marks_missing_and_exited():
    ctx = _ctx()

    def summary(i, state, status):
        return {"Id": f"{i}" * 64, "Names": [f"/web-{i}"], "State": state, "Status": status, "Ports": [],
                "Labels": {**ctx.labels, L.ROLE: "shard", L.SHARD: str(i), L.CPUS: "0-1", L.MEMS: "0"}}

    grp = G._from_containers("web", [summary(1, "exited", "Exited (137) 1 second ago")])
    assert [s.state for s in grp.shards] == ["missing", "exited"]
    assert grp.shards[0].cpus == [0, 1] and grp.shards[0].name == "web-0"
    assert grp.status == "degraded 0/2"
    grp = G._from_containers("web", [summary(0, "running", "Up"), summary(1, "running", "Up")])
    assert grp.status == "running 2/2"
    grp = G._from_containers("web", [summary(0, "exited", "Exited (0)"), summary(1, "exited", "Exited (0)")])
    assert grp.status == "stopped 0/2"


def test_undo_runs_newest_first_and_keeps_going_after_a_failure():
    done = []
    u = frontend.Undo()
    u.add("network", lambda: done.append("network"))
    for i in range(3):
        u.add(f"c{i}", lambda i=i: done.append(f"c{i}"), batch="containers")

    def boom():
        raise RuntimeError("no")

    u.add("lb", boom)
    assert u.rollback() == ["lb"]
    assert done[-1] == "network" and sorted(done[:3]) == ["c0", "c1", "c2"]
    assert len(u) == 0


def test_frontend_selection(tmp_path, monkeypatch):
    monkeypatch.delenv("GORB_URI", raising=False)
    root = str(sysfs_builder.build(tmp_path))
    req = run_cmd.run_request(cli.parse(["--fsroot", root, "run", "--lb", "none", "img"]))
    assert frontend.select(req).kind == "none"
    with pytest.raises(UsageError):
        FrontendOptions.choose(lb="nginx", gorb_uri="lo://127.0.0.1:4672")
    assert FrontendOptions.choose(gorb_uri="lo://127.0.0.1:4672").kind == "gorb"
    with pytest.raises(UsageError):
        FrontendOptions.choose(lb="kernel", gorb_uri="lo://127.0.0.1:4672")
    assert FrontendOptions.choose().kind == "auto"  # kernel where the host allows it, else nginx
    with pytest.raises(TessonError, match="unknown frontend"):
        frontend.load("haproxy")
    assert frontend.from_labels({L.FRONTEND: "none"}).kind == "none"


def test_the_run_request_parses_once_and_keeps_the_topology_it_planned_from(tmp_path, monkeypatch):
    monkeypatch.delenv("GORB_URI", raising=False)
    root = str(sysfs_builder.build(tmp_path))
    args = cli.parse(["--fsroot", root, "run", "-u", "NODE", "-n", "2", "-p", "8080:80", "--lb-cpus", "0",
                      "img", "--", "sh", "-c", "x"])
    req = run_cmd.run_request(args)
    assert req.unit == "numa" and len(req.shards) == 2 and req.command == ("sh", "-c", "x")
    assert [p.key for p in req.ports] == ["80/tcp"] and req.port_specs == ("8080:80",)
    assert req.frontend.kind == "auto" and req.frontend.lb_cpus == "0"
    fe = frontend.select(req)  # --lb-cpus is nginx's: auto picks nginx without asking the daemon
    assert fe.kind == "nginx"
    assert fe.cpus == [0]
    ctx = frontend.Context.for_run(req, None, fe)
    assert ctx.topology is req.topology and ctx.labels[L.UNIT] == "numa" and ctx.labels[L.LB_CPUS] == "0"
    missing = max(req.topology.pus) + 1
    bad = cli.parse(["--fsroot", root, "run", "-p", "80", "--lb-cpus", str(missing), "img"])
    with pytest.raises(UsageError, match="is not available on this machine"):
        frontend.select(run_cmd.run_request(bad))


def test_remote_docker_host_is_no_longer_refused_and_fsroot_still_wins(monkeypatch):
    """Issue 16: "needs --fsroot" is gone (a remote daemon's host is probed: tests/test_probe.py);
    --fsroot or TESSON_FSROOT still names the topology, and no daemon is asked then."""
    from tesson import cli, docker_client, probe

    monkeypatch.delenv("TESSON_FSROOT", raising=False)
    for host, remote in (("unix:///var/run/docker.sock", False), ("tcp://127.0.0.1:2375", False),
                         ("tcp://10.1.2.3:2376", True), ("ssh://me@box", True)):
        monkeypatch.setenv("DOCKER_HOST", host)
        assert docker_client.is_remote() is remote
        args = cli.parse(["run", "img"])
        assert args.fsroot == "/" and not args.fsroot_given
        if remote:
            assert not hasattr(docker_client, "check_topology_source")
            for argv in (["--fsroot", "/srv/box", "run", "img"], ["run", "--fsroot", "/", "img"]):
                a = cli.parse(argv)
                assert probe.for_args(a, ask=True).kind == "fsroot"
            monkeypatch.setenv("TESSON_FSROOT", "/srv/box")
            src = probe.for_args(cli.parse(["run", "img"]), ask=True)
            assert (src.kind, src.fsroot) == ("fsroot", "/srv/box")
            monkeypatch.delenv("TESSON_FSROOT")


def test_labels_json_is_compact_and_parsable():
    ctx = _ctx({"HostConfig": {"Memory": 1}})
    assert ctx.labels[L.CONFIG] == config.digest({"HostConfig": {"Memory": 1}})  # the digest, never the body
    assert json.loads(ctx.labels[L.CONFIG_FIELDS]) == ["HostConfig.Memory"]
    assert json.loads(ctx.labels[L.PLAN]) == [["0-1", "0"], ["2-3", "0-1"]]


@pytest.mark.parametrize(
    "state, restarts, fell",
    [
        ({"Running": True, "Restarting": False}, 0, False),
        ({"Running": True, "Restarting": False, "Paused": True}, 0, False),  # paused on purpose: up
        ({"Running": True, "Restarting": False}, 1, True),  # Docker restarted it already
        ({"Running": True, "Restarting": True, "ExitCode": 1}, 1, True),
        ({"Running": False, "Restarting": False, "ExitCode": 0}, 0, True),  # exited, even cleanly
        ({"Running": False, "Status": "created"}, 0, True),
    ],
)
def test_a_shard_that_is_not_steadily_running_fell_over(state, restarts, fell):
    assert (not Container({"State": state, "RestartCount": restarts}).steadily_running) is fell


def test_progress_ends_its_line_once(tmp_path):
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    out = Tty()
    p = runtime.Progress(2, "started", stream=out)
    p.step()
    p.step()
    p.close()
    p.close()
    assert out.text == "\rstarted 1/2\rstarted 2/2\n"


def _group(*found):
    """A group of four planned shards rebuilt from summaries ``(index, state)`` (others missing)."""
    ctx = _ctx()
    labels = {**ctx.labels, L.SIZE: "4", L.PLAN: json.dumps([["0", "0"], ["1", "0"], ["2", "0"], ["3", "0"]])}
    summaries = [{"Id": f"{i}" * 64, "Names": [f"/web-{i}"], "State": state, "Status": state, "Ports": [],
                  "Labels": {**labels, L.ROLE: "shard", L.SHARD: str(i), L.CPUS: str(i), L.MEMS: "0"}}
                 for i, state in found]
    return G._from_containers("web", summaries)


def test_the_repair_plan_keeps_restarts_recreates_or_leaves_each_shard_and_says_why():
    plan = runtime.plan_repair(_group((0, "running"), (1, "exited"), (2, "dead"), (3, "paused")))
    assert [(s.index, s.action, s.reason) for s in plan.steps] == [
        (0, "keep", "running"), (1, "restart", "exited"), (2, "recreate", "dead"), (3, "leave", "paused")]
    assert [s.index for s in plan.work] == [1, 2]
    assert plan.steps[2].container_id == "2" * 64 and plan.steps[2].shard.cpus == (2,)
    plan = runtime.plan_repair(_group((1, "created"), (3, "restarting")))
    assert [(s.action, s.reason, s.container_id) for s in plan.steps] == [
        ("recreate", "missing", ""), ("restart", "created", "1" * 64), ("recreate", "missing", ""),
        ("leave", "restarting", "3" * 64)]
    assert [s.index for s in plan.work] == [1, 0, 2]  # restarts first, as repair starts them
    assert [s.name for s in plan.with_action("recreate")] == ["web-0", "web-2"]


def test_a_group_without_a_spec_has_no_repair_plan():
    grp = G._from_containers("web", [{"Id": "0" * 64, "Names": ["/web-0"], "State": "exited",
                                      "Labels": {L.GROUP: "web", L.ROLE: "shard", L.SHARD: "0"}}])
    assert grp.spec is None
    with pytest.raises(ValueError):
        runtime.plan_repair(grp)
