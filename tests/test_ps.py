"""`tesson ps` as `docker ps` scripts, and the group given positionally, on the real daemon through
the real CLI (groups named t15-ps*). The plugin's side (both docker CLIs) is in test_image.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from tesson.commands.ps import FIELDS
from tests.conftest import group_containers, tesson_cmd

pytestmark = pytest.mark.docker

G = "t15-ps"


def _purge(client, group):
    for c in group_containers(client, group):
        client.remove_container(c["Id"], force=True, v=True)
    for n in client.networks(filters={"label": [f"io.tesson.group={group}"]}):
        client.remove_network(n["Id"])


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def group(docker_client, shard_image):
    """A running group of two shards, each publishing 8080 on an ephemeral port; by shard index
    the docker-py summary of its container."""
    _purge(docker_client, G)
    _ok(tesson_cmd("run", "-g", G, "-u", "pu", "-n", "2", "--lb", "none", "-p", "127.0.0.1::8080", shard_image))
    yield
    _purge(docker_client, G)


def _shards(client):
    return {int(c["Labels"]["io.tesson.shard"]): c for c in group_containers(client, G)}


def test_format_fields(group, docker_client, shard_image):
    shards = _shards(docker_client)
    template = "{{.Group}}|{{.Shard}}|{{.Name}}|{{.ID}}|{{.Image}}|{{.Status}}|{{.State}}|{{.CPUs}}|{{.Mems}}|{{.Ports}}"
    lines = _ok(tesson_cmd("ps", G, "--format", template)).splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines):
        grp, shard, name, cid, image, status, state, cpus, mems, ports = line.split("|")
        c = shards[i]
        info = docker_client.inspect_container(c["Id"])
        assert (grp, shard, name, cid, image) == (G, str(i), f"{G}-{i}", c["Id"][:12], shard_image)
        assert status.startswith("Up") and state == "running"
        assert cpus == info["HostConfig"]["CpusetCpus"] and mems == info["HostConfig"]["CpusetMems"]
        [binding] = info["NetworkSettings"]["Ports"]["8080/tcp"]
        assert ports == f"127.0.0.1:{binding['HostPort']}->8080/tcp"
    # a tab typed as \t, as Docker takes it; `{{json .Field}}`
    out = _ok(tesson_cmd("ps", G, "--format", r"{{.Name}}\t{{json .Shard}}"))
    assert out == f'{G}-0\t"0"\n{G}-1\t"1"\n'


def test_format_json_is_one_object_per_line(group, docker_client):
    out = _ok(tesson_cmd("ps", "--format", "json", "--filter", f"group={G}"))
    rows = [json.loads(line) for line in out.splitlines()]  # each line parses by itself
    assert [r["Name"] for r in rows] == [f"{G}-0", f"{G}-1"]
    for r in rows:
        assert set(r) == set(FIELDS) and all(isinstance(v, str) for v in r.values())
        assert "->8080/tcp" in r["Ports"]
    assert '"Ports":"127.0.0.1:' in out and "-\\u003e8080/tcp" in out  # Go's escapes, as docker's
    same = [json.loads(line) for line in _ok(tesson_cmd("ps", G, "--format", "{{json .}}")).splitlines()]
    assert [{**r, "Status": ""} for r in same] == [{**r, "Status": ""} for r in rows]  # "Up 3 seconds"


def test_table_is_aligned_as_docker_aligns_it(group, docker_client):
    """The same columns through `docker ps --format 'table ...'` and `tesson ps --format 'table
    ...'`: byte for byte the same lines (Docker's header says NAMES, tesson's NAME)."""
    ours = _ok(tesson_cmd("ps", G, "--format", r"table {{.ID}}\t{{.State}}\t{{.Name}}")).splitlines()
    theirs = subprocess.run(["docker", "ps", "-a", "--filter", f"label=io.tesson.group={G}", "--format",
                             r"table {{.ID}}\t{{.State}}\t{{.Names}}"], capture_output=True, text=True,
                            timeout=60).stdout.splitlines()
    assert ours[0] + "S" == theirs[0] == "CONTAINER ID   STATE     NAMES"
    assert sorted(ours[1:]) == sorted(theirs[1:]) and len(ours) == 3
    # the default view: Docker's CONTAINER ID and its three spaces between columns
    table = _ok(tesson_cmd("ps", G)).splitlines()
    header = next(line for line in table if line.startswith("SHARD"))
    name_width = max(10, len(f"{G}-0") + 3)
    assert header.startswith("SHARD     CONTAINER ID   " + "NAME".ljust(name_width) + "STATUS"), header


def test_quiet_and_filters(group, docker_client, shard_image):
    shards = _shards(docker_client)
    ids = [shards[i]["Id"][:12] for i in (0, 1)]
    assert _ok(tesson_cmd("ps", "-q", G)).split() == ids
    assert _ok(tesson_cmd("ps", "-q", "-g", G)).split() == ids
    assert _ok(tesson_cmd("ps", "-q", "-f", f"group={G}", "-f", "group=t15-nosuch")).split() == ids
    assert _ok(tesson_cmd("ps", "-q", "-f", f"group={G}", "-f", f"image={shard_image}")).split() == ids
    assert _ok(tesson_cmd("ps", "-q", "-f", f"group={G}", "-f", "image=t15-other:1")) == ""
    assert _ok(tesson_cmd("ps", "-q", G, "-f", "status=running")).split() == ids
    docker_client.stop(shards[1]["Id"], timeout=1)
    try:
        assert _ok(tesson_cmd("ps", "-q", G, "--filter", "status=exited")).split() == [ids[1]]
        assert _ok(tesson_cmd("ps", "-q", G, "-f", "status=exited", "-f", "status=running")).split() == ids
        assert _ok(tesson_cmd("ps", "-q", G, "--filter", "status=dead")) == ""
        # a container that is not running shows no ports, as docker ps
        lines = _ok(tesson_cmd("ps", G, "--format", "{{.Shard}} {{.State}} [{{.Ports}}]")).splitlines()
        assert lines[0].startswith("0 running [127.0.0.1:") and lines[1] == "1 exited []"
        row = next(line for line in _ok(tesson_cmd("ps", G)).splitlines() if line.startswith("1 "))
        assert "DOWN: Exited" in row and "8080" not in row and row == row.rstrip()
        # the default view with a status filter: only the matching shard
        table = _ok(tesson_cmd("ps", G, "-f", "status=exited"))
        assert f"{G}-1" in table and f"{G}-0 " not in table
    finally:
        docker_client.start(shards[1]["Id"])


def test_unknown_group_prints_nothing_exit_0(docker_client):
    for argv in (["t15-nosuch"], ["-g", "t15-nosuch"], ["--filter", "group=t15-nosuch"],
                 ["t15-nosuch", "--format", "json"], ["t15-nosuch", "-q"]):
        r = tesson_cmd("ps", *argv)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), argv
    # a table keeps its header, as docker ps's; the whole document is an empty list
    assert _ok(tesson_cmd("ps", "t15-nosuch", "--format", r"table {{.ID}}\t{{.Name}}")) == "CONTAINER ID   NAME\n"
    assert json.loads(_ok(tesson_cmd("ps", "t15-nosuch", "--json"))) == []


def test_group_given_positionally(group, docker_client):
    shards = _shards(docker_client)
    docker_client.kill(shards[0]["Id"])
    out = _ok(tesson_cmd("repair", G))
    assert f"restarted {G}-0" in out
    _ok(tesson_cmd("stop", G, "-t", "1"))
    assert {c["State"] for c in group_containers(docker_client, G)} == {"exited"}
    _ok(tesson_cmd("start", G))
    assert {c["State"] for c in group_containers(docker_client, G)} == {"running"}
    r = tesson_cmd("stop", "t15-nosuch")
    assert r.returncode == 1 and "t15-nosuch" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    _ok(tesson_cmd("stop", "--purge", G, "-t", "1"))
    assert group_containers(docker_client, G) == []
