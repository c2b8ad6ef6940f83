"""The everyday verbs (ls, logs, exec, stats, top, start, restart, version) and `run --pull`, on the
real daemon, through the real CLI, against one real group (groups named t15-*).

The group: the test shard image, `-u pu -n 2 --lb none`, each shard writing three numbered lines
to its log before it serves.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, group_containers, read_pty, tesson_cmd

pytestmark = pytest.mark.docker

G = "t15-verbs"
# three lines, 0.1 s apart, then the shard's usual server as PID 1
SHARD_CMD = ["sh", "-c", 'for i in 1 2 3; do echo "line $i of $TESSON_UID"; sleep 0.1; done; exec /start']


def _networks(client, group):
    return client.networks(filters={"label": [f"io.tesson.group={group}"]})


def _purge(client, group):
    for c in group_containers(client, group):
        client.remove_container(c["Id"], force=True, v=True)
    for n in _networks(client, group):
        client.remove_network(n["Id"])


def _one_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def group(docker_client, shard_image):
    """The running group; its shards' CPUs by index ({0: "0", 1: "1"} on a 2-CPU machine)."""
    _purge(docker_client, G)
    _ok(tesson_cmd("run", "-g", G, "-u", "pu", "-n", "2", "--lb", "none", shard_image, *SHARD_CMD))
    (doc,) = json.loads(_ok(tesson_cmd("ps", "-g", G, "--json")))
    cpus = {s["index"]: ",".join(map(str, s["cpus"])) for s in doc["shards"]}
    deadline = time.monotonic() + 10  # until both shards have written their lines
    while time.monotonic() < deadline:
        logs = b"".join(docker_client.logs(f"{G}-{i}") for i in (0, 1))
        if logs.count(b"line 3 of") == 2:
            break
        time.sleep(0.1)
    yield cpus
    _purge(docker_client, G)


def test_ls_one_line_per_group(group, shard_image):
    out = _ok(tesson_cmd("ls"))
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STATUS", "IMAGE", "SIZE", "FRONTEND"]
    (line,) = [r for r in rows if r.split()[0] == G]
    assert line.split() == [G, "running", "2/2", shard_image, "2", "none"]
    assert G in _ok(tesson_cmd("ls", "-q")).split()
    docs = [json.loads(x) for x in _ok(tesson_cmd("ls", "--format", "json")).splitlines()]
    (mine,) = [d for d in docs if d["name"] == G]
    assert mine == {"name": G, "status": "running 2/2", "image": shard_image, "size": 2, "frontend": "none",
                    "ports": []}


def test_logs_merges_both_shards_with_prefixes(group):
    lines = _ok(tesson_cmd("logs", G)).splitlines()
    for i in (0, 1):
        mine = [x for x in lines if x.startswith(f"{G}-{i} | ")]
        assert mine == [f"{G}-{i} | line {n} of {i}" for n in (1, 2, 3)], lines
    # --tail 1: the last line of each shard, nothing else; -g works as GROUP does
    assert sorted(_ok(tesson_cmd("logs", "--tail", "1", "-g", G)).splitlines()) == [
        f"{G}-0 | line 3 of 0", f"{G}-1 | line 3 of 1"]
    # --timestamps: Docker's stamp after the prefix, and the merge is in time order
    stamped = _ok(tesson_cmd("logs", "-t", G)).splitlines()
    assert len(stamped) == 6
    stamps = []
    for x in stamped:
        m = re.match(rf"{G}-[01] \| (\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?Z) line \d of [01]$", x)
        assert m, x
        stamps.append((m.group(1)[:19], int((m.group(2) or "0").ljust(9, "0"))))
    assert stamps == sorted(stamps)
    # --since: a time after every line leaves none; an hour back keeps them all
    assert _ok(tesson_cmd("logs", "--since", str(time.time() + 3600), G)) == ""
    assert len(_ok(tesson_cmd("logs", "--since", "1h", G)).splitlines()) == 6
    bare = _ok(tesson_cmd("logs", "--no-log-prefix", "--tail", "1", G)).splitlines()
    assert sorted(bare) == ["line 3 of 0", "line 3 of 1"]


def test_logs_follow_sees_new_lines(group, docker_client):
    p = subprocess.Popen([sys.executable, "-m", "tesson", "logs", "-f", "--tail", "0", G], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the streams are open
        # a line written to shard 1's PID 1 stdout is a line of its log
        ex = docker_client.exec_create(f"{G}-1", ["sh", "-c", "echo followed > /proc/1/fd/1"])
        docker_client.exec_start(ex["Id"])
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=10), "no line within 10 s"
        assert p.stdout.readline() == f"{G}-1 | followed\n"
        p.send_signal(signal.SIGINT)  # Ctrl-C is the way out of -f: exit 0, nothing on stderr
        assert p.wait(timeout=10) == 0 and p.stderr.read() == ""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_exec_index_runs_in_that_shard(group):
    out = _ok(tesson_cmd("exec", "--index", "1", G, "grep", "Cpus_allowed_list", "/proc/self/status"))
    assert out.split() == ["Cpus_allowed_list:", group[1]]
    out = _ok(tesson_cmd("exec", G, "sh", "-c", "echo $TESSON_UID"))  # shard 0 by default
    assert out == "0\n"
    # -g: the first word after the options is the command; the command's status and streams
    r = tesson_cmd("exec", "-g", G, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    # -i: stdin reaches the command
    r = tesson_cmd("exec", "-i", G, "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr


def test_exec_on_a_terminal_gets_one(group):
    """On a terminal exec is -it, as docker compose exec: the command sees a tty."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "tesson", "exec", G, "sh", "-c", "tty; echo done"], cwd=ROOT,
                         stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        assert p.wait(timeout=60) == 0
    finally:
        out = read_pty(master).decode(errors="replace")
    assert re.search(r"/dev/pts/\d+", out) and "done" in out, out


def test_stats_names_each_shards_cpus_and_their_busyness(group, docker_client):
    out = _ok(tesson_cmd("stats", "--no-stream", G))
    header, *rows = out.splitlines()
    assert "CPU %" in header and "BUSY PER PINNED CPU" in header and "MEM USAGE / LIMIT" in header
    for i in (0, 1):
        (row,) = [r for r in rows if r.split()[1] == f"{G}-{i}"]
        assert row.split()[2] == group[i] and f"cpu{group[i]} " in row, row
    # a busy loop in shard 1 shows on shard 1's own CPU
    ex = docker_client.exec_create(f"{G}-1", ["/bin/busybox", "timeout", "6", "sh", "-c", "while :; do :; done"])
    docker_client.exec_start(ex["Id"], detach=True)
    time.sleep(0.5)
    docs = {d["index"]: d for d in map(json.loads, _ok(tesson_cmd("stats", "--no-stream", "--format", "json", G)).splitlines())}
    assert set(docs) == {0, 1}
    for i in (0, 1):
        assert list(docs[i]["per_cpu"]) == [group[i]] and docs[i]["cpus"] == group[i]
        assert docs[i]["mem_usage"] > 0 and docs[i]["pids"] >= 1
    busy = docs[1]["per_cpu"][group[1]]
    assert busy > 25 and busy > docs[0]["per_cpu"][group[0]] + 10, docs
    assert docs[1]["cpu_percent"] > 25


def test_stats_streams_until_ctrl_c(group):
    p = subprocess.Popen([sys.executable, "-m", "tesson", "stats", "--format", "json", G], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    assert p.returncode == 0 and err == "", err
    docs = [json.loads(x) for x in out.splitlines()]
    assert len(docs) >= 4 and {d["name"] for d in docs} == {f"{G}-0", f"{G}-1"}  # two rounds or more
    last = {d["index"]: d for d in docs[-2:]}
    assert all(list(last[i]["per_cpu"]) == [group[i]] for i in (0, 1)), last


def test_top_lists_every_shards_processes(group):
    blocks = _ok(tesson_cmd("top", G)).split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [f"{G}-0", f"{G}-1"]
    for b in blocks:
        assert "PID" in b.splitlines()[1] and "httpd" in b


@pytest.mark.parametrize("argv", [("ps", "-g", G), ("ls",), ("logs", "--tail", "1", G), ("version",)],
                         ids=["ps", "ls", "logs", "version"])
def test_read_verbs_import_nothing_heavy(group, argv):
    """The everyday read verbs stay light (issue 15's speed work): no docker-py or requests on the
    local socket, and no ``dataclasses`` (with the ``inspect``, ``ast``, ``dis``... it imports)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tesson", *argv], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "the verb printed nothing"
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert f"tesson.commands.{argv[0]}" in imported and "tesson.docker_client" in imported, sorted(imported)
    heavy = {m for m in imported if m.split(".")[0] in ("dataclasses", "inspect", "docker", "requests", "urllib3")}
    assert not heavy, sorted(heavy)


def test_stop_then_start_in_place(group, docker_client, shard_image):
    before = {c["Names"][0]: c["Id"] for c in group_containers(docker_client, G)}
    _ok(tesson_cmd("stop", "-g", G, "-t", "1"))
    assert "stopped 0/2" in _ok(tesson_cmd("ls"))
    # run of a stopped group points to start
    r = tesson_cmd("run", "-g", G, "--lb", "none", shard_image)
    assert r.returncode == 1 and f"tesson start {G}" in _one_line(r)
    out = _ok(tesson_cmd("start", G))
    assert out.splitlines()[-1] == f"group {G}: running 2/2"
    after = {c["Names"][0]: c["Id"] for c in group_containers(docker_client, G)}
    assert after == before  # the same containers, started again
    out = _ok(tesson_cmd("exec", "--index", "1", G, "grep", "Cpus_allowed_list", "/proc/self/status"))
    assert out.split()[-1] == group[1]
    assert "nothing to start" in _ok(tesson_cmd("start", "-g", G))


def test_restart_starts_every_shard_again(group, docker_client):
    def started():
        return {i: docker_client.inspect_container(f"{G}-{i}")["State"]["StartedAt"] for i in (0, 1)}

    ids = {c["Id"] for c in group_containers(docker_client, G)}
    before = started()
    out = _ok(tesson_cmd("restart", "-t", "1", G))
    assert out.splitlines()[-1] == f"group {G}: restarted, running 2/2"
    after = started()
    assert all(after[i] != before[i] for i in (0, 1)), (before, after)
    assert {c["Id"] for c in group_containers(docker_client, G)} == ids


def test_version_names_tesson_and_the_daemon(docker_client):
    from tesson import __version__

    out = _ok(tesson_cmd("version"))
    daemon = docker_client.version()
    assert re.search(rf"^tesson: +{re.escape(__version__)}$", out, re.MULTILINE)
    assert re.search(rf"^Docker daemon: +{re.escape(daemon['Version'])}$", out, re.MULTILINE)
    doc = json.loads(_ok(tesson_cmd("version", "--format", "json")))
    assert doc["tesson"]["version"] == __version__ and doc["daemon"]["api_version"] == daemon["ApiVersion"]
    assert doc["tesson"]["python"] == platform.python_version()  # the interpreter tesson_cmd runs
    # no daemon: tesson's own version still, then one line, exit 1
    r = tesson_cmd("version", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.returncode == 1 and __version__ in r.stdout
    assert "cannot reach the Docker daemon" in _one_line(r)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, tesson_image):
    """The `docker tesson` plugin in a temporary DOCKER_CONFIG, running the image under test."""
    config = tmp_path_factory.mktemp("docker-config")
    r = subprocess.run([str(ROOT / "docker-plugin" / "install")], env=dict(os.environ, DOCKER_CONFIG=str(config)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return dict(os.environ, DOCKER_CONFIG=str(config), TESSON_IMAGE=tesson_image)


def test_verbs_through_the_plugin(group, plugin_env, docker_client):
    from tesson import __version__

    def docker_tesson(*args):
        return subprocess.run(["docker", "tesson", *args], capture_output=True, text=True, env=plugin_env,
                              timeout=120, stdin=subprocess.DEVNULL)

    out = _ok(docker_tesson("version"))
    assert re.search(rf"^tesson: +{re.escape(__version__)}$", out, re.MULTILINE)
    assert re.search(rf"^Docker daemon: +{re.escape(docker_client.version()['Version'])}$", out, re.MULTILINE)
    assert [x.split()[:3] for x in _ok(docker_tesson("ls")).splitlines() if x.startswith(G + " ")] == [
        [G, "running", "2/2"]]
    out = _ok(docker_tesson("exec", "--index", "1", G, "grep", "Cpus_allowed_list", "/proc/self/status"))
    assert out.split() == ["Cpus_allowed_list:", group[1]]
    assert sorted(_ok(docker_tesson("logs", "--tail", "1", G)).splitlines()) == [
        f"{G}-0 | line 3 of 0", f"{G}-1 | line 3 of 1"]


@pytest.mark.parametrize("argv", [["logs"], ["stats", "--no-stream"], ["top"], ["start"], ["restart"]])
def test_unknown_group_is_one_line_exit_1(docker_client, argv):
    for r in (tesson_cmd(*argv, "t15-nosuch"), tesson_cmd(*argv, "-g", "t15-nosuch")):
        assert r.returncode == 1
        assert _one_line(r) == "tesson: no group named 't15-nosuch' (tesson ls lists every group)"


def test_exec_in_unknown_group_is_one_line_exit_1(docker_client):
    r = tesson_cmd("exec", "t15-nosuch", "true")
    assert r.returncode == 1
    assert _one_line(r) == "tesson: no group named 't15-nosuch' (tesson ls lists every group)"


def test_bad_input_is_exit_2(group):
    for args in (["exec", "--index", "2", G, "true"], ["exec", "--index", "-1", G, "true"],
                 ["exec", "--index", "x", G, "true"], ["exec", G], ["logs"], ["logs", G, "-g", "other"],
                 ["logs", "--tail", "some", G], ["logs", "--since", "yesterday", G], ["logs", "bad name"]):
        r = tesson_cmd(*args)
        assert r.returncode == 2, (args, r.stderr)
        _one_line(r)
    r = tesson_cmd("exec", "--index", "2", G, "true")
    assert _one_line(r) == f"tesson: group {G} has shards 0-1, not 2"


# --- run --pull ------------------------------------------------------------------------------

UNREACHABLE = "127.0.0.1:1/tesson-t15-nothing:latest"  # a registry no one listens on: fails at once


@pytest.fixture
def local_tag(docker_client, shard_image):
    """The shard image also tagged as if from the unreachable registry: any pull of it fails."""
    repo, tag = "127.0.0.1:1/tesson-t15-shard", "latest"
    docker_client.tag(shard_image, repo, tag)
    yield f"{repo}:{tag}"
    try:
        docker_client.remove_image(f"{repo}:{tag}")  # only the tag: the image stays
    except Exception:
        pass


def test_pull_never_refuses_a_missing_image(docker_client):
    g = "t15-pull-never"
    r = tesson_cmd("run", "-g", g, "--lb", "none", "--pull", "never", UNREACHABLE)
    assert r.returncode == 1 and "--pull never" in _one_line(r)
    assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []


def test_pull_missing_uses_the_local_image(docker_client, local_tag):
    """The default is missing: the image is on the daemon, so no pull is tried (one would fail)."""
    g = "t15-pull-local"
    try:
        r = tesson_cmd("run", "-g", g, "-n", "1", "--lb", "none", local_tag)
        assert r.returncode == 0, r.stderr
        assert "running 1/1" in r.stdout
    finally:
        _purge(docker_client, g)


@pytest.mark.parametrize("image,opts", [(UNREACHABLE, []), (UNREACHABLE, ["--pull", "missing"]),
                                        ("local", ["--pull", "always"])])
def test_failed_pull_is_one_line_and_leaves_nothing(docker_client, local_tag, image, opts):
    """A missing image is pulled (and fails: the registry is unreachable); `always` pulls even an
    image the daemon has. One line with the registry's reason, exit 1, nothing left (the default
    nginx frontend included: the pull comes before anything is made)."""
    g = "t15-pull-fail"
    image = local_tag if image == "local" else image
    try:
        r = tesson_cmd("run", "-g", g, *opts, image, timeout=60)
        assert r.returncode == 1
        line = _one_line(r)
        assert line.startswith(f"tesson: cannot pull image {image!r}: ") and "127.0.0.1:1" in line, line
        assert "connection refused" in line
        assert group_containers(docker_client, g) == [] and _networks(docker_client, g) == []
    finally:
        _purge(docker_client, g)
