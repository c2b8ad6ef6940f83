"""Remote daemons (issue 16), against a second endpoint made by the test: a TCP listener on
127.0.0.1 that forwards every connection to the local daemon's socket. tesson sees a tcp:// daemon,
recognises it as this machine by its facts, and with --probe reads the topology through a real
probe container; the plans equal the local ones, the probe leaves no container, the answer is
cached, and a changed boot marker or CPU count is probed again. The plugin reaches the same
endpoint through DOCKER_HOST and through a Docker context."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARD_IMAGE, Forwarder, require, tesson_cmd

pytestmark = pytest.mark.docker

SOCKET = "/var/run/docker.sock"
INSTALL = ROOT / "docker-plugin" / "install"


@pytest.fixture(scope="module")
def endpoint(docker_client):
    require(os.path.exists(SOCKET), f"the daemon's socket {SOCKET} is needed for the forwarding endpoint")
    fwd = Forwarder()
    yield fwd
    fwd.close()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def via(endpoint, cache, *args, image=None, **env):
    """tesson through the tcp:// endpoint, the cache in the test's folder."""
    full = {"DOCKER_HOST": endpoint.url, "TESSON_CACHE_DIR": str(cache), "TESSON_PROBE": "", **env}
    if image:
        full["TESSON_IMAGE"] = image
    return tesson_cmd(*args, env=full)


def local(*args):
    env = {"DOCKER_HOST": "", "TESSON_PROBE": "", "TESSON_FSROOT": ""}
    return tesson_cmd(*args, env=env)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def probe_events(since: float) -> list[str]:
    """The daemon's events for probe containers since ``since``: ['create', 'start', ..., 'destroy']."""
    r = subprocess.run(["docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                        "--filter", "label=io.tesson.role=probe", "--filter", "type=container",
                        "--format", "{{.Action}}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def probe_containers(docker_client) -> list[dict]:
    return docker_client.containers(all=True, filters={"label": ["io.tesson.role=probe"]})


def stored_key(cache: Path) -> tuple[Path, dict]:
    [entry] = list((cache / "probe").iterdir())
    return entry / "key.json", json.loads((entry / "key.json").read_text())


def test_a_tcp_endpoint_to_this_machine_is_recognised_as_local(endpoint, cache, docker_client):
    before = endpoint.connections
    t0 = time.time()
    r = ok(via(endpoint, cache, "topology", "--format", "json"))
    doc = json.loads(r.stdout)
    assert doc["source"]["kind"] == "local" and endpoint.url in doc["source"]["where"]
    assert endpoint.connections > before  # it really asked the daemon through the endpoint
    assert probe_events(t0) == [] and not (cache / "probe").exists()
    doc.pop("source")
    mine = json.loads(ok(local("topology", "--format", "json")).stdout)
    mine.pop("source")
    assert doc == mine


def test_probe_plans_equal_local_ones_leave_no_container_and_are_cached(endpoint, cache, tesson_image, docker_client):
    t0 = time.time()
    first = ok(via(endpoint, cache, "--probe", "topology", image=tesson_image))
    assert first.stdout.startswith("Read from: host ") and "by a probe container" in first.stdout and "just now" in first.stdout
    events = probe_events(t0)
    assert events[0] == "create" and "start" in events and events[-1] == "destroy", events
    assert probe_containers(docker_client) == []
    mine = ok(local("topology")).stdout
    assert first.stdout.split("\n", 1)[1] == mine.split("\n", 1)[1]  # the same tree, line for line
    # the plans of every unit, through the probe's (cached) answer, equal the local ones
    t1 = time.time()
    for unit in ("pu", "core", "package"):
        probed = json.loads(ok(via(endpoint, cache, "--probe", "run", "--dry-run", "-u", unit, "--format", "json",
                                   "img", image=tesson_image)).stdout)
        here = json.loads(ok(local("run", "--dry-run", "-u", unit, "--format", "json", "img")).stdout)
        assert probed == here, unit
    again = ok(via(endpoint, cache, "topology", image=tesson_image, TESSON_PROBE="1"))
    assert "(cached " in again.stdout
    assert probe_events(t1) == []  # only the first command paid for a probe
    key_file, key = stored_key(cache)
    boot_id = key["boot_id"]
    assert boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    # a reboot (dockerd made its bridge anew) is probed again, and finds the same host
    key_file.write_text(json.dumps(dict(key, daemon_start="before-the-reboot")))
    t2 = time.time()
    r = ok(via(endpoint, cache, "--probe", "topology", image=tesson_image))
    assert "just now" in r.stdout and probe_events(t2)[0] == "create"
    _, key2 = stored_key(cache)
    assert key2["daemon_start"] == key["daemon_start"] and key2["boot_id"] == boot_id
    # so is a daemon whose CPUs changed
    key_file.write_text(json.dumps(dict(key2, ncpu=key2["ncpu"] + 1)))
    assert "just now" in ok(via(endpoint, cache, "--probe", "topology", image=tesson_image)).stdout
    assert probe_containers(docker_client) == []


def test_a_run_through_the_probe_starts_the_shards_on_the_planned_cpus(endpoint, cache, tesson_image, shard_image,
                                                                       docker_client):
    group = f"t16-probe-{os.getpid() % 100000}"
    try:
        r = ok(via(endpoint, cache, "--probe", "run", "-g", group, "--lb", "none", "-n", "2", "--format", "json",
                   shard_image, image=tesson_image))
        plan = json.loads(ok(local("run", "--dry-run", "-n", "2", "--format", "json", "img")).stdout)["shards"]
        doc = json.loads(r.stdout)
        got = doc[0] if isinstance(doc, list) else doc
        cpus = {c["Names"][0].lstrip("/"): c["Labels"]["io.tesson.cpus"]
                for c in docker_client.containers(filters={"label": [f"io.tesson.group={group}"]})}
        from tesson import cpulist

        assert cpus == {f"{group}-{s['index']}": cpulist.format(s["cpus"]) for s in plan}, (cpus, got)
        ok(via(endpoint, cache, "stop", "-g", group, "--purge", "-t", "1"))
    finally:
        for c in docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}):
            docker_client.remove_container(c["Id"], force=True, v=True)
    assert probe_containers(docker_client) == []


@pytest.mark.parametrize("image, says", [
    ("tesson-no-such-image:never", "has no image tesson-no-such-image:never"),
    (SHARD_IMAGE, "the probe failed in " + SHARD_IMAGE),  # no python3, no tesson inside
])
def test_a_probe_that_cannot_run_is_one_line_exit_1_and_leaves_no_container(
        endpoint, cache, shard_image, docker_client, image, says):
    r = via(endpoint, cache, "--probe", "--probe-image", image, "run", "--dry-run", "img")
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert says in line and endpoint.url in line and "Traceback" not in line
    assert f"docker save {image} | docker -H {endpoint.url} load" in line and "--probe-image" in line
    assert probe_containers(docker_client) == [] and not (cache / "probe").exists()


# --- the plugin through the same endpoint ---------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, tesson_image, endpoint):
    config = tmp_path_factory.mktemp("docker-config")
    r = subprocess.run([str(INSTALL)], env=dict(os.environ, DOCKER_CONFIG=str(config)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, DOCKER_CONFIG=str(config), TESSON_IMAGE=tesson_image)
    env.pop("DOCKER_HOST", None)
    r = subprocess.run(["docker", "context", "create", "t16-fwd", "--docker", f"host={endpoint.url}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return env


def test_docker_tesson_through_docker_host_and_through_a_context(endpoint, plugin_env):
    mine = json.loads(ok(local("topology", "--format", "json")).stdout)
    mine.pop("source")
    for how, extra_env, argv in (("DOCKER_HOST", {"DOCKER_HOST": endpoint.url}, []),
                                 ("context", {}, ["--context", "t16-fwd"])):
        before = endpoint.connections
        r = subprocess.run(["docker", *argv, "tesson", "topology", "--format", "json"],
                           env={**plugin_env, **extra_env}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (how, r.stderr)
        doc = json.loads(r.stdout)
        assert doc.pop("source")["kind"] == "local", how  # inside, the daemon's own machine
        assert doc["pus"] == mine["pus"] and doc["cores"] == mine["cores"], how
        assert endpoint.connections > before, how  # the tesson container was run through the endpoint
        r = subprocess.run(["docker", *argv, "tesson", "ls", "-q"], env={**plugin_env, **extra_env},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (how, r.stderr)
