"""run / ps / stop / repair on the real Docker daemon, through the real CLI (groups named t3-*).

Pinning is checked from inside each shard: its CGI reads Cpus_allowed_list from /proc/self/status.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from tesson import cpulist
from tests.conftest import ROOT, group_containers, http_get, parse_shard_answer, read_pty, tesson_cmd

pytestmark = pytest.mark.docker


def _networks(client, group):
    return client.networks(filters={"label": [f"io.tesson.group={group}"]})


def _plan(group, *opts):
    r = tesson_cmd("run", "--dry-run", "--format", "json", "-g", group, *opts, "img")
    assert r.returncode == 0, r.stderr
    return {s["index"]: s for s in json.loads(r.stdout)["shards"]}


def _published(client, cid, key="8080/tcp"):
    ports = client.inspect_container(cid)["NetworkSettings"]["Ports"][key]
    return int(next(p["HostPort"] for p in ports if p["HostIp"] in ("0.0.0.0", "")))


def _ps(group):
    r = tesson_cmd("ps", "-g", group, "--json")
    assert r.returncode == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    return doc


def _one_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_pins_every_shard_then_ps_and_stop(docker_client, shard_image, cleanup):
    g = "t3-pin"
    cleanup.append(g)
    plan = _plan(g, "-n", "2", "-u", "pu")
    r = tesson_cmd("run", "-g", g, "-n", "2", "-u", "pu", "--lb", "none", "-p", "8080", shard_image)
    assert r.returncode == 0, r.stderr
    assert f"Group: {g} [{shard_image}]" in r.stdout and "running 2/2" in r.stdout

    found = docker_client.containers(filters={"label": [f"io.tesson.group={g}"]})  # docker ps --filter
    assert sorted(c["Names"][0] for c in found) == [f"/{g}-0", f"/{g}-1"]
    doc = _ps(g)
    assert doc["status"] == "running 2/2" and doc["size"] == 2 and doc["unit"] == "pu"
    for s in doc["shards"]:
        want = plan[s["index"]]
        assert s["cpus"] == want["cpus"] and s["mems"] == want["mems"] and s["state"] == "running"
        info = docker_client.inspect_container(f"{g}-{s['index']}")
        cpus, mems = cpulist.format(want["cpus"]), cpulist.format(want["mems"])
        labels = info["Config"]["Labels"]
        assert {k: labels[k] for k in ("io.tesson.group", "io.tesson.role", "io.tesson.shard", "io.tesson.cpus",
                                       "io.tesson.mems", "io.tesson.unit", "io.tesson.size")} == {
            "io.tesson.group": g, "io.tesson.role": "shard", "io.tesson.shard": str(s["index"]),
            "io.tesson.cpus": cpus, "io.tesson.mems": mems, "io.tesson.unit": "pu", "io.tesson.size": "2"}
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert (env["TESSON_GROUP"], env["TESSON_UID"], env["TESSON_CPUS"], env["TESSON_NCPUS"], env["GOMAXPROCS"]) == (
            g, str(s["index"]), cpus, str(len(want["cpus"])), str(len(want["cpus"])))
        host = info["HostConfig"]
        assert (host["CpusetCpus"], host["CpusetMems"], host["RestartPolicy"]["Name"]) == (cpus, mems, "unless-stopped")
        # from inside the shard, on its published ephemeral port
        port = _published(docker_client, info["Id"])
        assert any(p.endswith(f":{port}->8080/tcp") for p in s["ports"])
        answer = parse_shard_answer(http_get("127.0.0.1", port))
        assert answer["Cpus_allowed_list"] == cpus and answer["uid"] == str(s["index"])
        assert answer["hostname"] == info["Config"]["Hostname"]

    r = tesson_cmd("stop", "-g", g, "-t", "5")
    assert r.returncode == 0, r.stderr
    assert {c["State"] for c in group_containers(docker_client, g)} == {"exited"}
    assert _ps(g)["status"] == "stopped 0/2"
    assert tesson_cmd("stop", "-g", g).returncode == 0  # stopping a stopped group succeeds
    r = tesson_cmd("stop", "-g", g, "--purge")
    assert r.returncode == 0, r.stderr
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []
    r = tesson_cmd("ps", "-g", g)  # a group that is not there: nothing, as `docker ps` (issue 15)
    assert r.returncode == 0 and r.stdout == "", r.stderr


def test_config_fields_and_command_reach_the_container(docker_client, shard_image, cleanup, tmp_path):
    g = "t3-cfg"
    cleanup.append(g)
    cfg = tmp_path / "shard.json"
    cfg.write_text(json.dumps({
        "Env": ["FOO=bar", "GOMAXPROCS=7"],
        "Labels": {"team": "storage"},
        "User": "65534",
        "Cmd": ["overridden", "by", "the", "command", "line"],
        "HostConfig": {"Memory": 64 * 1024 * 1024, "CpuShares": 512, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                       "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]},
    }, indent=2))
    # every word after IMAGE belongs to the command, flags included
    r = tesson_cmd("run", "-g", g, "-n", "1", "--lb", "none", "-p", "8081", "-c", str(cfg), shard_image,
                   "/bin/busybox", "httpd", "-f", "-p", "8081", "-h", "/www")
    assert r.returncode == 0, r.stderr
    info = docker_client.inspect_container(f"{g}-0")
    assert info["Config"]["Cmd"] == ["/bin/busybox", "httpd", "-f", "-p", "8081", "-h", "/www"]
    assert info["Config"]["User"] == "65534" and info["Config"]["Labels"]["team"] == "storage"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["FOO"] == "bar" and env["GOMAXPROCS"] == "7" and env["TESSON_UID"] == "0"
    host = info["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["CpuShares"] == 512
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    answer = parse_shard_answer(http_get("127.0.0.1", _published(docker_client, info["Id"], "8081/tcp")))
    assert answer["Cpus_allowed_list"] == host["CpusetCpus"]
    assert tesson_cmd("stop", "-g", g, "--purge", "-t", "1").returncode == 0
    assert group_containers(docker_client, g) == []


def test_a_failing_shard_leaves_nothing_behind(docker_client, shard_image, cleanup, tmp_path):
    g = "t3-fail"
    cleanup.append(g)
    # two shards cannot both take one fixed host port: whichever starts second fails
    port = _free_port()
    r = tesson_cmd("run", "-g", g, "-n", "2", "--lb", "none", "-p", f"{port}:8080", shard_image)
    assert r.returncode == 1
    line = _one_line(r)
    assert f"shard {g}-" in line and "already allocated" in line and str(port) in line
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []
    # a host port held by another process, bound through the config
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        taken = s.getsockname()[1]
        cfg = tmp_path / "bind.json"
        cfg.write_text(json.dumps({"ExposedPorts": {"8080/tcp": {}},
                                   "HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": str(taken)}]}}}))
        r = tesson_cmd("run", "-g", g, "-n", "1", "--lb", "none", "-c", str(cfg), shard_image)
    assert r.returncode == 1 and f"shard {g}-0 failed to start" in _one_line(r) and str(taken) in r.stderr
    assert group_containers(docker_client, g) == []
    # a command that does not exist
    r = tesson_cmd("run", "-g", g, "-n", "2", "--lb", "none", shard_image, "/no/such/program", "-x")
    assert r.returncode == 1 and "/no/such/program" in _one_line(r)
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []


def test_ps_shows_a_killed_shard_and_repair_brings_it_back(docker_client, shard_image, cleanup):
    g = "t3-rep"
    cleanup.append(g)
    plan = _plan(g, "-n", "2", "-u", "pu")
    r = tesson_cmd("run", "-g", g, "-n", "2", "-u", "pu", "--lb", "none", "-p", "8080", shard_image)
    assert r.returncode == 0, r.stderr
    before = {s["index"]: s["id"] for s in _ps(g)["shards"]}
    docker_client.kill(f"{g}-1")  # died
    docker_client.remove_container(f"{g}-0", force=True)  # vanished
    doc = _ps(g)
    assert doc["status"] == "degraded 0/2"
    assert [s["state"] for s in doc["shards"]] == ["missing", "exited"]
    assert doc["shards"][0]["cpus"] == plan[0]["cpus"]  # known from the other shard's labels
    table = tesson_cmd("ps", "-g", g).stdout
    assert "degraded 0/2" in table and table.count("DOWN") == 2

    r = tesson_cmd("repair", "-g", g)
    assert r.returncode == 0, r.stderr
    assert f"recreated {g}-0" in r.stdout and f"restarted {g}-1" in r.stdout
    doc = _ps(g)
    assert doc["status"] == "running 2/2"
    assert doc["shards"][1]["id"] == before[1] and doc["shards"][0]["id"] != before[0]
    for s in doc["shards"]:
        answer = parse_shard_answer(http_get("127.0.0.1", _published(docker_client, f"{g}-{s['index']}")))
        assert answer["Cpus_allowed_list"] == cpulist.format(plan[s["index"]]["cpus"])
        assert answer["uid"] == str(s["index"])
    r = tesson_cmd("repair", "-g", g)
    assert r.returncode == 0 and "nothing to repair" in r.stdout
    assert tesson_cmd("stop", "-g", g, "--purge").returncode == 0


def test_bad_input_is_one_line_with_the_right_exit_code(docker_client, shard_image, cleanup, tmp_path):
    g = "t3-bad"
    cleanup.append(g)
    not_json = tmp_path / "broken.json"
    not_json.write_text('{\n  "Env": ["A=1"],\n  oops\n}\n')
    pinned = tmp_path / "pinned.json"
    pinned.write_text('{\n  "HostConfig": {\n    "CpusetCpus": "0"\n  }\n}\n')
    cases = [
        (["run", "-g", g, "--lb", "none", "t3-no-such-image:never"], 1, "t3-no-such-image:never"),
        (["run", "-g", g, "--lb", "none", "-p", "99999", shard_image], 2, "99999"),
        (["run", "-g", g, "--lb", "none", "-p", "abc", shard_image], 2, "'abc'"),
        (["run", "-g", g, "--lb", "none", "-c", str(not_json), shard_image], 2, "broken.json line 3"),
        (["run", "-g", g, "--lb", "none", "-c", str(pinned), shard_image], 2, "CpusetCpus"),
        (["run", "-g", "bad name!", "--lb", "none", shard_image], 2, "bad name!"),
        (["stop", "-g", "t3-never-ran"], 1, "t3-never-ran"),
        (["repair", "-g", "t3-never-ran"], 1, "t3-never-ran"),
    ]
    for argv, code, needle in cases:
        r = tesson_cmd(*argv)
        assert r.returncode == code, (argv, r.stderr)
        assert needle in _one_line(r), (argv, r.stderr)
    # no daemon: say what was tried
    for verb in (["ps"], ["run", "-g", g, "--lb", "none", shard_image], ["stop", "-g", g]):
        r = tesson_cmd(*verb, env={"DOCKER_HOST": "unix:///tmp/t3-no-daemon.sock"})
        assert r.returncode == 1 and "/tmp/t3-no-daemon.sock" in _one_line(r)
    # issue 16: a remote daemon is no longer refused for want of --fsroot; one that cannot be
    # reached is the usual one line naming it
    r = tesson_cmd("run", "-g", g, "--lb", "none", shard_image, env={"DOCKER_HOST": "tcp://192.0.2.1:2375"})
    assert r.returncode == 1 and "192.0.2.1:2375" in _one_line(r) and "--fsroot" not in r.stderr
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []


def test_group_name_in_use_and_concurrent_runs(docker_client, shard_image, cleanup):
    cleanup.extend(["t3-race", "t3-race-a", "t3-race-b"])
    argv = [sys.executable, "-m", "tesson", "run", "-n", "2", "--lb", "none", shard_image]

    def spawn(group):
        return subprocess.Popen(argv[:4] + ["-g", group] + argv[4:], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    same = [spawn("t3-race"), spawn("t3-race")]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in same]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "already in use" in loser and "tesson stop -g t3-race" in loser
    assert len(group_containers(docker_client, "t3-race")) == 2
    # a group in use is refused, naming it
    r = tesson_cmd("run", "-g", "t3-race", "--lb", "none", shard_image)
    assert r.returncode == 1 and "already in use" in _one_line(r)
    # different groups at the same time both succeed
    other = [spawn("t3-race-a"), spawn("t3-race-b")]
    assert [p.wait(timeout=120) for p in other] == [0, 0], [p.stderr.read() for p in other]
    for g in ("t3-race", "t3-race-a", "t3-race-b"):
        assert len(group_containers(docker_client, g)) == 2
        assert tesson_cmd("stop", "-g", g, "--purge").returncode == 0


# --- in process: the runtime's claim and rollback, with small real frontends -----------------------


def _context(client, group, image, size=2, frontend_kind="none"):
    from tesson import frontend
    from tesson import group as G
    from tesson.placement import Shard

    shards = [Shard(i, (i % 2,), (0,)) for i in range(size)]
    spec = G.Spec(group, image, [], [], {}, "pu", shards, frontend_kind)
    return frontend.Context(group=group, docker=client, image=image, shards=shards, unit="pu",
                            labels={**spec.labels()})


def test_only_one_of_two_simultaneous_claims_wins(docker_client, shard_image, cleanup):
    """Both runs pass every check at the same moment; creating GROUP-0 decides."""
    from tesson import runtime
    from tesson.frontend.none import NoneFrontend

    g = "t3-claim"
    cleanup.append(g)
    barrier = threading.Barrier(2, timeout=30)

    class Together(NoneFrontend):
        def before_shards(self, ctx):
            barrier.wait()

    outcome = []

    def go():
        try:
            runtime.run(_context(docker_client, g, shard_image), Together())
            outcome.append("won")
        except runtime.GroupInUse as e:
            outcome.append(f"lost: {e}")

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o.split(":")[0] for o in outcome) == ["lost", "won"], outcome
    assert sorted(c["Names"][0] for c in group_containers(docker_client, g)) == [f"/{g}-0", f"/{g}-1"]


@pytest.mark.parametrize("failure", ["interrupt", "error"])
def test_frontend_failure_or_ctrl_c_undoes_everything(docker_client, shard_image, cleanup, failure):
    """A frontend makes a real network in before_shards; after_shards fails (or Ctrl-C arrives):
    the shards and the network are gone afterwards."""
    from tesson import runtime
    from tesson.errors import TessonError
    from tesson.frontend.none import NoneFrontend

    g = f"t3-undo-{failure}"
    cleanup.append(g)
    seen = {}

    class Failing(NoneFrontend):
        def before_shards(self, ctx):
            net = ctx.docker.create_network(f"tesson-{g}", labels={"io.tesson.group": g})["Id"]
            ctx.undo.add(f"network tesson-{g}", lambda: ctx.docker.remove_network(net))

        def after_shards(self, ctx):
            seen["started"] = sorted(ctx.started)
            seen["containers"] = len(group_containers(ctx.docker, g))
            if failure == "interrupt":
                raise KeyboardInterrupt
            raise TessonError("balancer would not start")

    with pytest.raises(TessonError) as e:
        runtime.run(_context(docker_client, g, shard_image, size=3), Failing())
    assert seen == {"started": [0, 1, 2], "containers": 3}
    if failure == "interrupt":
        assert isinstance(e.value, runtime.Interrupted) and e.value.exit_code == 130
    else:
        assert "balancer would not start" in str(e.value) and "removed what this run made (3 containers, 1 network)" in str(e.value)
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []


def test_ctrl_c_in_the_middle_cleans_up(docker_client, shard_image, cleanup):
    """SIGINT once the first shard exists: exit 130 and nothing left (or, if the run won the race, a
    whole group)."""
    import signal
    import time

    g = "t3-sigint"
    cleanup.append(g)
    p = subprocess.Popen([sys.executable, "-m", "tesson", "run", "-g", g, "-n", "12", "--force", "-u", "pu", "--lb", "none",
                          shard_image], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not group_containers(docker_client, g) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    code = p.wait(timeout=60)
    err = p.stderr.read()
    left = group_containers(docker_client, g)
    if code == 0:
        assert len(left) == 12
    else:
        assert code == 130 and "interrupted" in err and "Traceback" not in err, err
        assert left == []


def test_progress_on_a_terminal(docker_client, shard_image, cleanup):
    import os
    import pty

    g = "t3-tty"
    cleanup.append(g)
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "tesson", "run", "-g", g, "-n", "2", "--lb", "none", shard_image],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, timeout=120)
    finally:
        os.close(slave)
        seen = read_pty(master)
    assert p.returncode == 0
    assert b"started 2/2" in seen and b"started 2/2" not in p.stdout


# --- shards that fall over at once, a stranger's GROUP-0, repair that cannot do everything ----------


@pytest.mark.parametrize("lb", ["none", "nginx"])
def test_a_command_that_exits_at_once_fails_the_run_and_leaves_nothing(docker_client, shard_image, tesson_image,
                                                                       cleanup, lb):
    """Docker starts such a shard fine and then restarts it in a loop: run must see that, before the
    balancer is made, and roll back."""
    g = f"t3-crash-{lb}"
    cleanup.append(g)
    front = ["--lb", "none"] if lb == "none" else ["-p", "8080", "--lb", "nginx", "--lb-image", tesson_image]
    r = tesson_cmd("run", "-g", g, "-n", "2", *front, shard_image, "false")
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = _one_line(r)
    assert f"shard {g}-0 exited right after it started (exit code 1" in line and "it logged nothing" in line
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []
    # what it said last, and its own exit code, even once Docker has restarted it
    r = tesson_cmd("run", "-g", g, "-n", "1", *front, shard_image, "sh", "-c", "echo t3 gave up >&2; exit 7")
    assert r.returncode == 1
    line = _one_line(r)
    assert f"shard {g}-0 exited right after it started (exit code 7" in line and "last log line: t3 gave up" in line
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []


def test_a_shard_that_exits_with_restart_policy_no_fails_the_run(docker_client, shard_image, cleanup, tmp_path):
    g = "t3-crash-no"
    cleanup.append(g)
    cfg = tmp_path / "norestart.json"
    cfg.write_text(json.dumps({"HostConfig": {"RestartPolicy": {"Name": "no"}}}))
    r = tesson_cmd("run", "-g", g, "-n", "2", "--lb", "none", "-c", str(cfg), shard_image,
                   "sh", "-c", 'if [ "$TESSON_UID" = 1 ]; then echo t3 shard one quits; exit 4; fi; exec /start')
    assert r.returncode == 1
    line = _one_line(r)
    assert f"shard {g}-1 exited right after it started (exit code 4)" in line and "t3 shard one quits" in line
    assert f"{g}-0 " not in line.split(";")[0]  # the healthy shard is not blamed
    assert group_containers(docker_client, g) == []


def test_a_foreign_container_named_group_0_is_not_called_a_group(docker_client, shard_image, cleanup):
    g = "t3-foreign"
    cleanup.append(g)
    foreign = docker_client.create_container(shard_image, name=f"{g}-0")["Id"]  # no tesson labels
    try:
        r = tesson_cmd("run", "-g", g, "-n", "2", "--lb", "none", shard_image)
        assert r.returncode == 1
        line = _one_line(r)
        assert f"a container named {g}-0 exists and is not part of tesson group '{g}'" in line
        assert "tesson stop" not in line and "choose another -g" in line
        # the stranger's container is untouched, and the run made nothing
        assert docker_client.inspect_container(f"{g}-0")["Id"] == foreign
        assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []
        assert docker_client.containers(all=True, filters={"name": f"^/{g}-1$"}) == []
    finally:
        docker_client.remove_container(foreign, force=True)


def test_repair_keeps_what_it_repaired_and_names_what_it_could_not(docker_client, shard_image, cleanup):
    g = "t3-rep-part"
    cleanup.append(g)
    r = tesson_cmd("run", "-g", g, "-n", "3", "-u", "pu", "--lb", "none", "-p", "8080", shard_image)
    assert r.returncode == 0, r.stderr
    plan = {s["index"]: s["cpus"] for s in _ps(g)["shards"]}
    docker_client.remove_container(f"{g}-0", force=True)
    docker_client.remove_container(f"{g}-1", force=True)
    # a stranger takes shard 1's name: it cannot be recreated, shard 0 can
    stranger = docker_client.create_container(shard_image, name=f"{g}-1")["Id"]
    try:
        r = tesson_cmd("repair", "-g", g)
        assert r.returncode == 1
        line = _one_line(r)
        assert line.startswith(f"tesson: could not repair {g}-1 (") and "already in use" in line
        assert f"recreated {g}-0" in line and f"tesson repair -g {g}" in line
        info = docker_client.inspect_container(f"{g}-0")
        assert info["State"]["Running"] and info["Config"]["Labels"]["io.tesson.group"] == g
        answer = parse_shard_answer(http_get("127.0.0.1", _published(docker_client, info["Id"])))
        assert answer["Cpus_allowed_list"] == cpulist.format(plan[0])
        assert docker_client.inspect_container(f"{g}-1")["Id"] == stranger  # not ours: untouched
        assert [s["state"] for s in _ps(g)["shards"]] == ["running", "missing", "running"]
    finally:
        docker_client.remove_container(stranger, force=True)
    r = tesson_cmd("repair", "-g", g)
    assert r.returncode == 0, r.stderr
    assert f"recreated {g}-1" in r.stdout and _ps(g)["status"] == "running 3/3"


def test_repair_turns_a_frontend_daemon_error_into_one_line_and_keeps_the_shards(docker_client, shard_image, cleanup):
    """A frontend whose repair meets a daemon error (here: inspecting a container that is not there)."""
    from tesson import group as G
    from tesson import runtime
    from tesson.errors import TessonError
    from tesson.frontend import Context
    from tesson.frontend.none import NoneFrontend

    g = "t3-rep-fe"
    cleanup.append(g)
    r = tesson_cmd("run", "-g", g, "-n", "2", "--lb", "none", shard_image)
    assert r.returncode == 0, r.stderr
    docker_client.remove_container(f"{g}-1", force=True)
    seen = {}

    class Broken(NoneFrontend):
        def repair(self, ctx, recreated):
            seen["recreated"] = recreated
            ctx.docker.inspect_container(f"{g}-no-such-balancer")
            return []

    grp = G.find(docker_client, g)
    with pytest.raises(TessonError) as e:
        runtime.repair(Context.for_group(grp, docker_client), Broken())
    text = str(e.value)
    assert type(e.value) is TessonError and "\n" not in text
    assert text.startswith("none frontend could not be brought in line:") and f"{g}-no-such-balancer" in text
    assert f"recreated {g}-1" in text and seen == {"recreated": [1]}
    assert docker_client.inspect_container(f"{g}-1")["State"]["Running"]


# --- repair's settle check; stop --purge of a group whose frontend cannot be loaded (groups t3r-*) ---

# Up the first time; on every later start of the same container (the marker is in its own
# filesystem) it says why and exits 5 at once.
_SECOND_START_FAILS = ("if [ -e /tmp/t3r-started ]; then echo t3r second start fails >&2; exit 5; fi; "
                       ": > /tmp/t3r-started; exec /start")


def test_repair_does_not_count_a_shard_that_falls_over_again_at_once(docker_client, shard_image, cleanup):
    from tesson import group as G
    from tesson import runtime
    from tesson.errors import TessonError
    from tesson.frontend import Context
    from tesson.frontend.none import NoneFrontend

    g = "t3r-settle"
    cleanup.append(g)
    r = tesson_cmd("run", "-g", g, "-n", "2", "-u", "pu", "--lb", "none", shard_image, "sh", "-c", _SECOND_START_FAILS)
    assert r.returncode == 0, r.stderr
    docker_client.remove_container(f"{g}-0", force=True)  # recreated: a fresh container, up for good
    docker_client.stop(f"{g}-1", timeout=5)  # restarted: falls over at once
    crashing = docker_client.inspect_container(f"{g}-1")["Id"]
    r = tesson_cmd("repair", "-g", g)
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = _one_line(r)
    assert line.startswith(f"tesson: could not repair {g}-1 (exited right after it started (exit code 5")
    assert "last log line: t3r second start fails" in line
    assert f"recreated {g}-0" in line and f"restarted {g}-1" not in line and f"tesson repair -g {g}" in line
    # left in place, not removed: the same container, which Docker is still trying
    assert docker_client.inspect_container(f"{g}-1")["Id"] == crashing
    assert docker_client.inspect_container(f"{g}-0")["State"]["Running"]

    # in process: the frontend's repair hook is told only of the shard that stayed up
    docker_client.remove_container(f"{g}-0", force=True)
    docker_client.stop(f"{g}-1", timeout=5)
    seen = {}

    class Recording(NoneFrontend):
        def repair(self, ctx, recreated):
            seen["recreated"], seen["started"] = recreated, sorted(ctx.started)
            return []

    ctx = Context.for_group(G.find(docker_client, g), docker_client)
    with pytest.raises(TessonError) as e:
        runtime.repair(ctx, Recording())
    assert f"could not repair {g}-1 (exited right after it started" in str(e.value)
    assert seen == {"recreated": [0], "started": [0]}
    assert docker_client.inspect_container(f"{g}-1")["Id"] == crashing

    # a repair whose shards stay up still succeeds
    docker_client.remove_container(f"{g}-1", force=True)
    r = tesson_cmd("repair", "-g", g)
    assert r.returncode == 0, r.stderr
    assert f"recreated {g}-1" in r.stdout and _ps(g)["status"] == "running 2/2"


def test_stop_purge_removes_the_networks_of_a_group_whose_frontend_is_unknown(docker_client, shard_image, cleanup):
    """A group run by a tesson with a frontend kind this one cannot load: its labelled network
    still goes with --purge; one that cannot go (a stranger attached) is named, exit 1."""
    g = "t3r-unknown-fe"
    cleanup.append(g)
    labels = {"io.tesson.group": g, "io.tesson.role": "shard", "io.tesson.shard": "0",
              "io.tesson.frontend": "t3r-no-such-kind"}
    net_name = f"tesson-{g}"

    def make():
        net = docker_client.create_network(net_name, labels={"io.tesson.group": g})["Id"]
        cid = docker_client.create_container(shard_image, name=f"{g}-0", labels=labels,
                                             host_config=docker_client.create_host_config(network_mode=net_name))["Id"]
        docker_client.start(cid)
        return net

    make()
    r = tesson_cmd("stop", "-g", g, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []

    net = make()
    stranger = docker_client.create_container(shard_image, name="t3r-stranger",
                                              host_config=docker_client.create_host_config(network_mode=net_name))["Id"]
    try:
        docker_client.start(stranger)
        r = tesson_cmd("stop", "-g", g, "--purge", "-t", "1")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        # the frontend warning frontend.for_group logs, then the error: one line
        warning, line = r.stderr.strip().splitlines()
        assert "frontend unavailable" in warning and "t3r-no-such-kind" in warning
        assert line.startswith("tesson: ")
        assert f"group {g}: its containers are removed, but network {net_name} was not removed" in line
        assert f"'docker network rm {net_name}'" in line
        assert group_containers(docker_client, g) == [] and [n["Id"] for n in _networks(docker_client, g)] == [net]
    finally:
        docker_client.remove_container(stranger, force=True)
