"""The standard library's Engine API client (tesson.engine_lite) against docker-py's APIClient, on
the same real containers: the same answers for the same calls (listings with filters, inspects, logs
with tail/since/until/timestamps, a TTY container's log, exec, archives, errors); the read-only verbs
import neither docker-py nor requests on the local socket, with every front door; and a tcp://
daemon (a forwarder to the same socket, tests.conftest.Forwarder) still goes through docker-py, with
the same output. Containers and groups are named t15-lite*."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import ROOT, Forwarder, remove_group, require, tesson_cmd

pytestmark = pytest.mark.docker

LABEL = "io.tesson.test=t15-lite"
PLAIN, TTY, LIVE = "t15-lite-plain", "t15-lite-tty", "t15-lite-live"
# five lines on each stream, apart in time (so since/until can cut between them)
WRITER = ["sh", "-c", 'for i in 1 2 3 4 5; do echo "out $i"; echo "err $i" >&2; sleep 0.2; done']
HEAVY = ("docker", "requests", "urllib3")


def _remove(client, *names: str) -> None:
    for name in names:
        try:
            client.remove_container(name, force=True, v=True)
        except Exception:
            pass


@pytest.fixture(scope="module")
def lite():
    from tesson import engine_lite

    path = engine_lite.local_socket()
    require(path is not None and os.path.exists(path), "the daemon's local unix socket is needed")
    return engine_lite.connect(path)


@pytest.fixture(scope="module")
def made(docker_client, shard_image):
    """Two containers that wrote their lines and exited (one with a TTY) and one that runs."""
    _remove(docker_client, PLAIN, TTY, LIVE)
    for name, tty, cmd in ((PLAIN, False, WRITER), (TTY, True, WRITER), (LIVE, False, None)):
        docker_client.create_container(shard_image, cmd, name=name, tty=tty, labels={"io.tesson.test": "t15-lite",
                                                                                      "role": name.rsplit("-", 1)[1]})
        docker_client.start(name)
    for name in (PLAIN, TTY):
        assert docker_client.wait(name, timeout=30)["StatusCode"] == 0
    yield
    _remove(docker_client, PLAIN, TTY, LIVE)


def _steady(summaries: list) -> list:
    """Summaries without ``Status`` ("Up 3 seconds" ticks between two calls)."""
    return [{k: v for k, v in c.items() if k != "Status"} for c in summaries]


def test_listings_are_docker_pys(made, lite, docker_client):
    for kw in ({"all": True, "filters": {"label": [LABEL]}},
               {"filters": {"label": [LABEL]}},  # running ones only
               {"all": True, "filters": {"label": [LABEL, "role=tty"]}},
               {"all": True, "filters": {"label": LABEL, "status": "exited"}},  # a value not in a list
               {"all": True, "filters": {"name": "t15-lite-", "label": [LABEL]}, "trunc": True},
               {"all": True, "filters": {"label": [LABEL]}, "quiet": True}):
        ours, theirs = lite.containers(**kw), docker_client.containers(**kw)
        assert _steady(ours) == _steady(theirs), kw
        assert ours, kw
    assert {c["Names"][0] for c in lite.containers(all=True, filters={"label": [LABEL]})} == {f"/{n}" for n in (PLAIN, TTY, LIVE)}
    assert lite.containers(all=True, filters={"label": [LABEL, "role=nothing"]}) == []
    # run --dry-run's listing (tesson.daemon_claims): unversioned, the daemon's current version, the same summaries
    from tesson import engine_lite

    bare = engine_lite.Client(lite.path, version=engine_lite.UNVERSIONED)
    for kw in ({"all": True, "filters": {"label": [LABEL]}}, {"all": True, "filters": {"label": [LABEL, "role=tty"]}}):
        assert _steady(bare.containers(**kw)) == _steady(docker_client.containers(**kw)), kw
    assert bare.api_version == engine_lite.UNVERSIONED and bare.version(api_version=False)["ApiVersion"] == lite.api_version


def test_network_listings_are_docker_pys(lite, docker_client):
    """The kernel agent's second listing (tesson.frontend.kernel_table.wanted): networks by name."""
    name = "t15-lite-net"
    for n in docker_client.networks(names=[name]):
        docker_client.remove_network(n["Id"])
    docker_client.create_network(name, driver="bridge", labels={"io.tesson.test": "t15-lite"})
    try:
        for kw in ({"names": [name]}, {"names": [name, "bridge"]}, {"filters": {"label": "io.tesson.test=t15-lite"}},
                   {"names": ["t15-lite-no-such-net"]}):
            ours, theirs = lite.networks(**kw), docker_client.networks(**kw)
            assert sorted(n["Id"] for n in ours) == sorted(n["Id"] for n in theirs), kw
        assert [n["Name"] for n in lite.networks(names=[name])] == [name]
        assert lite.networks(names=["t15-lite-no-such-net"]) == []
    finally:
        for n in docker_client.networks(names=[name]):
            docker_client.remove_network(n["Id"])


def test_inspects_are_docker_pys(made, lite, docker_client):
    for name in (PLAIN, TTY, LIVE):
        doc = lite.inspect_container(name)
        assert doc == docker_client.inspect_container(name)
        assert lite.inspect_container(doc["Id"]) == doc and lite.inspect_container({"Id": doc["Id"]}) == doc
    assert lite.inspect_container(TTY)["Config"]["Tty"] is True


def test_logs_are_docker_pys(made, lite, docker_client):
    stamps = docker_client.logs(PLAIN, timestamps=True).splitlines()
    third = stamps[4].split(b" ", 1)[0].decode()  # "out 3"'s time: since/until cut there
    from datetime import datetime

    at = datetime.fromisoformat(third[:26] + "+00:00").timestamp()
    for name in (PLAIN, TTY):
        for kw in ({}, {"tail": 1}, {"tail": 3, "timestamps": True}, {"tail": "all"}, {"tail": -1},
                   {"stdout": False}, {"stderr": False}, {"since": at}, {"since": int(at)}, {"until": at},
                   {"since": at - 0.1, "until": at + 0.1, "timestamps": True}):
            assert lite.logs(name, **kw) == docker_client.logs(name, **kw), (name, kw)
    plain = lite.logs(PLAIN)
    assert sorted(plain.splitlines()) == sorted(f"{s} {i}".encode() for i in range(1, 6) for s in ("out", "err"))
    assert lite.logs(PLAIN, stderr=False).splitlines() == [f"out {i}".encode() for i in range(1, 6)]
    assert lite.logs(PLAIN, tail=1) in (b"out 5\n", b"err 5\n")
    assert b"out 1\r\n" in lite.logs(TTY)  # a TTY's raw bytes, no frames to take apart


def test_exec_and_archive_are_docker_pys(made, lite, docker_client):
    cmd = ["sh", "-c", "echo to-out; sleep 0.2; echo to-err >&2; exit 3"]  # apart: the streams race
    for kw in ({"demux": True}, {"demux": False}, {"demux": True, "tty": True}, {}):
        tty = kw.get("tty", False)
        outs, inspects = [], []
        for client in (lite, docker_client):
            exec_id = client.exec_create(LIVE, cmd, tty=tty)["Id"]
            outs.append(client.exec_start(exec_id, **kw))
            inspects.append(client.exec_inspect(exec_id))
        assert outs[0] == outs[1], kw
        assert inspects[0]["ExitCode"] == inspects[1]["ExitCode"] == 3
        assert inspects[0]["ProcessConfig"] == inspects[1]["ProcessConfig"]
        assert set(inspects[0]) == set(inspects[1])
    assert lite.exec_start(lite.exec_create(LIVE, cmd)["Id"], demux=True) == (b"to-out\n", b"to-err\n")
    assert lite.exec_start(lite.exec_create(LIVE, "true")["Id"], demux=True) == (None, None)
    chunks, stat = lite.get_archive(LIVE, "/etc/passwd")
    data = b"".join(chunks)
    theirs, their_stat = docker_client.get_archive(LIVE, "/etc/passwd")
    assert data == b"".join(theirs) and stat == their_stat and stat["name"] == "passwd"
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert archive.extractfile(archive.next()).read().startswith(b"root:x:0:0:")
    from tesson import engine_lite
    from tesson.docker_client import unless_gone

    with pytest.raises(engine_lite.NotFound):
        lite.get_archive(LIVE, "/no/such/path")
    assert unless_gone(lite.get_archive, LIVE, "/no/such/path") is None


def test_version_and_errors_are_docker_pys(lite, docker_client):
    import docker.errors

    from tesson import docker_client as dc
    from tesson import engine_lite

    assert lite.api_version == docker_client.api_version
    ours, theirs = lite.version(), docker_client.version()
    assert ours == theirs and lite.ping() is True
    assert lite.info()["ID"] == docker_client.info()["ID"]
    with pytest.raises(engine_lite.NotFound) as mine:
        lite.inspect_container("t15-lite-no-such-container")
    with pytest.raises(docker.errors.NotFound) as real:
        docker_client.inspect_container("t15-lite-no-such-container")
    assert mine.value.status_code == real.value.status_code == 404
    assert dc.explain(mine.value) == dc.explain(real.value) == "No such container: t15-lite-no-such-container"
    assert dc.is_status(mine.value, 404) and not dc.is_status(mine.value, 409)
    assert dc.unless_gone(lite.inspect_container, "t15-lite-no-such-container") is None
    # outside the subset: docker-py on the same socket, its answers as they are
    assert lite.images(filters={"reference": "tesson-test-shard"}) == docker_client.images(filters={"reference": "tesson-test-shard"})


def test_unreachable_daemon_is_the_same_line(monkeypatch):
    from tesson import docker_client as dc
    from tesson.errors import TessonError

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    lines = []
    for connect in (dc.connect_read, dc.connect):
        with pytest.raises(TessonError) as e:
            connect()
        lines.append(str(e.value))
    assert lines[0] == lines[1] == ("cannot reach the Docker daemon at DOCKER_HOST=unix:///nonexistent/docker.sock: "
                                    "no such socket (is dockerd running?)")


def test_which_client(monkeypatch):
    from tesson import docker_client as dc
    from tesson import engine_lite

    env = {"DOCKER_HOST": "unix:///run/x.sock"}
    assert engine_lite.local_socket({}) == "/var/run/docker.sock"
    assert engine_lite.local_socket({"DOCKER_HOST": ""}) == "/var/run/docker.sock"
    assert engine_lite.local_socket(env) == "/run/x.sock"
    for other in ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, {"DOCKER_HOST": "ssh://me@there"},
                  {**env, "DOCKER_TLS_VERIFY": "1"}, {"DOCKER_CERT_PATH": "/certs"}, {"DOCKER_HOST": "unix://rel.sock"}):
        assert engine_lite.local_socket(other) is None, other
    if engine_lite.local_socket() is not None and os.path.exists(engine_lite.local_socket()):
        assert isinstance(dc.connect_read(), engine_lite.Client)


# --- the verbs ------------------------------------------------------------------------------------


def _imports(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tesson", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=120, cwd=ROOT)
    return r, {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}


def _heavy(imported: set) -> list:
    return sorted(m for m in imported if m.split(".")[0] in HEAVY)


@pytest.fixture(scope="module")
def groups(docker_client, shard_image, tesson_image):
    """Three running groups of two shards, one per front door: none, nginx, kernel."""
    names = {"none": "t15-lite-none", "nginx": "t15-lite-nginx", "kernel": "t15-lite-kernel"}
    ports = {"none": "127.0.0.1::8080", "nginx": "28921:8080", "kernel": "28922:8080"}
    for name in names.values():
        remove_group(docker_client, name)
    try:
        for kind, name in names.items():
            r = tesson_cmd("run", "-g", name, "-u", "pu", "-n", "2", "--lb", kind, "-p", ports[kind], shard_image,
                           env={"TESSON_IMAGE": tesson_image})
            assert r.returncode == 0, r.stderr
        yield names
    finally:
        for name in names.values():
            tesson_cmd("stop", name, "--purge")
            remove_group(docker_client, name)


def test_read_verbs_import_neither_docker_nor_requests(groups):
    g = groups["none"]
    for args in (["ps", g], ["ps", "--format", "json", g], ["ps", "-q"], ["ps", "--filter", "status=running"],
                 ["ps", "--json", g], ["ps", "--format", "table {{.Name}} {{.CPUs}}"], ["ls"], ["ls", "--format", "json"],
                 ["logs", "--tail", "1", g], ["logs", "-t", g], ["version"], ["ps", "t15-lite-nothing"]):
        r, imported = _imports(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "tesson.engine_lite" in imported, args
        assert not _heavy(imported), (args, _heavy(imported))
    for kind in ("nginx", "kernel"):  # every front door describes itself without docker-py
        r, imported = _imports("ps", groups[kind])
        assert r.returncode == 0 and "running" in r.stdout, r.stderr
        # (modules imported by importlib.import_module, as the frontends are, have no importtime line)
        assert f"tesson.frontend.{kind}_{'lb' if kind == 'nginx' else 'rules'}" in imported, kind
        assert not _heavy(imported), (kind, _heavy(imported))


def _volatile(doc: list) -> list:
    """ps --json without what ticks between two calls: "Up 3 seconds" (shards and balancer)."""
    for grp in doc:
        for s in grp["shards"]:
            s.pop("status")
        grp["frontend"].pop("detail", None)
    return doc


def test_a_tcp_daemon_goes_through_docker_py_with_the_same_output(groups):
    fwd = Forwarder()
    try:
        env = {"DOCKER_HOST": fwd.url}
        only = [f"--filter=group={name}" for name in groups.values()]
        for args in (["ps", "--json", *only], ["ps", "--format", "{{.Group}} {{.Name}} {{.ID}} {{.State}} {{.CPUs}} {{.Ports}}", *only],
                     ["ls", "--format", "json"], ["logs", "-t", groups["none"]], ["ps", "-q", groups["kernel"]]):
            before = fwd.connections
            r, imported = _imports(*args, env=env)
            assert r.returncode == 0, (args, r.stderr)
            assert "docker.api.client" in imported, args
            assert fwd.connections > before, args  # the lean client speaks only to a unix socket
            local = tesson_cmd(*args)
            assert local.returncode == 0, local.stderr
            if args[:2] == ["ps", "--json"]:
                assert len(json.loads(local.stdout)) == 3
                assert _volatile(json.loads(local.stdout)) == _volatile(json.loads(r.stdout))
                kinds = {g["frontend"]["kind"]: g["frontend"]["status"] for g in json.loads(local.stdout)}
                assert kinds["kernel"] == "running, 2/2 shards in rotation" and kinds["nginx"] == "running", kinds
            elif args[0] == "ls":  # every group on the daemon: other sessions' come and go meanwhile
                mine = [[ln for ln in out.splitlines() if json.loads(ln)["name"] in groups.values()] for out in (local.stdout, r.stdout)]
                assert mine[0] == mine[1] and len(mine[0]) == 3, mine
            else:
                assert local.stdout == r.stdout, args
    finally:
        fwd.close()

