"""End to end, as a user meets tesson: the image built the CI way, the `docker tesson` plugin installed
in a temporary DOCKER_CONFIG, a demo group behind the embedded balancer on the real daemon.

    docker tesson run -g e2e -p 18080:8080 -n 2 tesson demo-server
    curl localhost:18080          # answers from both shards, each on its own CPUs
    docker tesson ps --format json
    docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v /sys:/sys:ro tesson ps
    docker tesson stop -g e2e --purge

The tests of this module run in order on one group (module fixture); the last one stops it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tesson import cpulist
from tests.conftest import ROOT

GROUP = "e2e"
PORT = 18080
CFG_GROUP = "t6-e2e-cfg"
OVERRIDE = "t6-tesson:e2e"  # TESSON_IMAGE for the run: the balancer must come from it
OUR_GROUPS = (GROUP, CFG_GROUP)


def docker(*args, env=None, timeout=180, cwd=None):
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def group_containers(client, group: str) -> list[dict]:
    return client.containers(all=True, filters={"label": f"io.tesson.group={group}"})


def group_networks(client, group: str) -> list[dict]:
    return client.networks(filters={"label": f"io.tesson.group={group}"}) + [
        n for n in client.networks(names=[f"tesson-{group}"]) if n["Name"] == f"tesson-{group}"
    ]


def purge(client, group: str) -> None:
    """Remove what a group of ours left (by its label), whatever tesson managed; tesson's own purge
    first (the kernel front door, chosen by --lb auto, leaves rules in the kernel)."""
    subprocess.run([sys.executable, "-m", "tesson", "stop", "-g", group, "--purge", "-t", "1"],
                   capture_output=True, cwd=ROOT, timeout=120)
    for c in group_containers(client, group):
        try:
            client.remove_container(c["Id"], force=True, v=True)
        except Exception:
            pass
    for n in group_networks(client, group):
        try:
            client.remove_network(n["Id"])
        except Exception:
            pass


def get(url: str, timeout: float = 3.0) -> dict:
    # A fresh connection per request, so the balancer chooses again each time.
    req = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, tesson_image):
    config = tmp_path_factory.mktemp("docker-config")
    r = subprocess.run([str(ROOT / "docker-plugin" / "install")], env=dict(os.environ, DOCKER_CONFIG=str(config)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert docker("tag", tesson_image, OVERRIDE).returncode == 0
    yield dict(os.environ, DOCKER_CONFIG=str(config), TESSON_IMAGE=OVERRIDE)
    docker("rmi", OVERRIDE)


@pytest.fixture(scope="module")
def e2e_group(plugin_env, tesson_image, docker_client):
    for g in OUR_GROUPS:
        purge(docker_client, g)
    with socket.socket() as s:  # the front door must be free, or the test would measure someone else
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", PORT))
        except OSError:
            pytest.fail(f"port {PORT} is taken on this machine; the e2e test needs it")
    r = docker("tesson", "run", "-g", GROUP, "-p", f"{PORT}:8080", "-n", "2", tesson_image, "demo-server",
               env=plugin_env)
    try:
        yield r
    finally:
        for g in OUR_GROUPS:
            purge(docker_client, g)


def planned_cpus() -> dict[int, str]:
    """The plan for 2 shards, from tesson on the host (same /sys), by shard index."""
    r = subprocess.run([sys.executable, "-m", "tesson", "run", "--dry-run", "-n", "2", "-g", GROUP,
                        "--format", "json", "img"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return {s["index"]: cpulist.format(s["cpus"]) for s in json.loads(r.stdout)["shards"]}


def test_run_answers_from_both_shards_on_their_cpus(e2e_group, docker_client):
    r = e2e_group
    assert r.returncode == 0, f"docker tesson run failed ({r.returncode}): {r.stderr}"
    plan = planned_cpus()
    shards = {int(c["Labels"]["io.tesson.shard"]): c for c in group_containers(docker_client, GROUP)
              if c["Labels"].get("io.tesson.role") == "shard"}
    assert sorted(shards) == [0, 1]
    hostnames = {i: docker_client.inspect_container(c["Id"])["Config"]["Hostname"] for i, c in shards.items()}

    seen = {}
    deadline = time.monotonic() + 20
    answers = 0
    while (len(seen) < 2 or answers < 8) and time.monotonic() < deadline:
        try:
            doc = get(f"http://127.0.0.1:{PORT}/")
        except OSError:
            time.sleep(0.2)  # shards still starting
            continue
        answers += 1
        assert doc["group"] == GROUP
        i = doc["shard"]
        assert doc["cpus"] == plan[i], f"shard {i} answered from CPUs {doc['cpus']}, planned {plan[i]}"
        assert doc["cpus"] == shards[i]["Labels"]["io.tesson.cpus"]
        assert doc["hostname"] == hostnames[i]
        seen[i] = doc
    assert sorted(seen) == [0, 1], f"only shards {sorted(seen)} answered in {answers} requests"


def test_balancer_comes_from_tesson_image(e2e_group, docker_client):
    """The shim hands TESSON_IMAGE to tesson inside, whose balancer then runs that image."""
    lbs = [c for c in group_containers(docker_client, GROUP) if c["Labels"].get("io.tesson.role") == "lb"]
    assert len(lbs) == 1
    assert lbs[0]["Image"] == OVERRIDE
    assert lbs[0]["State"] == "running"


def test_ps_json_shows_the_group(e2e_group, plugin_env):
    r = docker("tesson", "ps", "--json", env=plugin_env)
    assert r.returncode == 0, r.stderr
    groups = {g["group"]: g for g in json.loads(r.stdout)}
    g = groups[GROUP]
    assert g["size"] == 2
    plan = planned_cpus()
    assert sorted(s["index"] for s in g["shards"]) == [0, 1]
    for s in g["shards"]:
        assert s["state"] == "running" and s["status"].startswith("Up"), s
        assert cpulist.format(s["cpus"]) == plan[s["index"]]
    r = docker("tesson", "ps", "-g", GROUP, env=plugin_env)
    assert r.returncode == 0 and GROUP in r.stdout and f"{GROUP}-0" in r.stdout
    # --format json: one object per shard and line, as `docker ps --format json`
    r = docker("tesson", "ps", GROUP, "--format", "json", env=plugin_env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["Group"], x["Shard"], x["State"]) for x in rows] == [(GROUP, "0", "running"), (GROUP, "1", "running")]
    assert [x["CPUs"] for x in rows] == [plan[0], plan[1]]


def test_plain_docker_run_ps_shows_the_group(e2e_group, tesson_image):
    base = ["run", "--rm", "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", "/sys:/sys:ro", tesson_image]
    r = docker(*base, "ps")
    assert r.returncode == 0, r.stderr
    assert f"{GROUP}-0" in r.stdout and f"{GROUP}-1" in r.stdout
    r = docker(*base, "ps", "--json", "-g", GROUP)
    assert r.returncode == 0, r.stderr
    assert [g["group"] for g in json.loads(r.stdout)] == [GROUP]


def test_config_file_is_readable_inside(e2e_group, plugin_env, tesson_image, docker_client, tmp_path):
    """`-c FILE` (a relative path) reaches tesson in the container: its labels land on the shard; a
    broken file is reported by its own path."""
    (tmp_path / "shard.json").write_text(json.dumps({"Labels": {"t6.probe": "from-config"},
                                                     "Env": ["T6_PROBE=1"]}))
    r = docker("tesson", "run", "-g", CFG_GROUP, "-n", "1", "--lb", "none", "-c", "shard.json",
               tesson_image, "demo-server", env=plugin_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    try:
        [c] = group_containers(docker_client, CFG_GROUP)
        assert c["Labels"]["t6.probe"] == "from-config"
        env = docker_client.inspect_container(c["Id"])["Config"]["Env"]
        assert "T6_PROBE=1" in env
    finally:
        assert docker("tesson", "stop", "-g", CFG_GROUP, "--purge", "-t", "2", env=plugin_env).returncode == 0
    (tmp_path / "broken.json").write_text('{"Labels": {\n  "a": 1,,\n}}')
    r = docker("tesson", "run", "-g", CFG_GROUP, "-n", "1", "--lb", "none", "-c", "broken.json",
               tesson_image, "demo-server", env=plugin_env, cwd=tmp_path)
    assert r.returncode in (1, 2), r.stderr
    assert str(tmp_path / "broken.json") in r.stderr and "line 2" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert group_containers(docker_client, CFG_GROUP) == []


def test_stop_purge_leaves_nothing(e2e_group, plugin_env, docker_client):
    r = docker("tesson", "stop", "-g", GROUP, "--purge", "-t", "5", env=plugin_env)
    assert r.returncode == 0, r.stderr
    assert group_containers(docker_client, GROUP) == []
    assert group_networks(docker_client, GROUP) == []
    # and a failing command's exit code comes back through the shim: the group is gone
    r = docker("tesson", "stop", "-g", GROUP, env=plugin_env)
    assert r.returncode == 1
    assert GROUP in r.stderr and len(r.stderr.strip().splitlines()) == 1
