"""Bad input, interrupts, races and secrets (issue 10), on the real daemon and the Gorb stand-in.

Groups are named ``t10-*``. Every test looks at what the daemon (or the stand-in) holds afterwards,
not only at tesson's exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, tesson_cmd
from tests.gorb_standin.fixtures import *  # noqa: F403

NO_ENV_GORB = {"GORB_URI": ""}


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines[0]


def _labelled(client, group):
    cs = client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]})
    ns = client.networks(filters={"label": [f"io.tesson.group={group}"]})
    return cs, ns


def _remove_all(client, group):
    cs, _ = _labelled(client, group)
    for c in cs:
        client.remove_container(c["Id"], force=True, v=True)
    for n in client.networks(names=[f"tesson-{group}"]) + _labelled(client, group)[1]:
        try:
            client.remove_network(n["Id"])
        except Exception:
            pass


@pytest.fixture
def group(request, docker_client):
    name = "t10-" + request.node.name.split("[")[0].replace("test_", "").replace("_", "-")[:40]
    _remove_all(docker_client, name)
    yield name
    _remove_all(docker_client, name)


# --- input that is refused before anything starts ----------------------------------------------

@pytest.mark.parametrize("size", ["9223372036854775807", "99999999999999999999", "10000000", "\u0663", "1_0", "+2", " 2"])
def test_absurd_or_non_ascii_sizes_are_usage_errors(size):
    for extra in ([], ["--dry-run"]):
        r = tesson_cmd("run", *extra, "-n", size, "-g", "t10-size", "img", timeout=20)
        assert r.returncode == 2, (size, extra, r.stderr)
        line = _one_line(r)
        assert "-n" in line or "size" in line, line


def test_far_more_shards_than_cpus_needs_force(tmp_path):
    """The rule: at most 4 shards per allowed CPU without --force; --force lifts it up to a hard cap."""
    r = tesson_cmd("topology", "--format", "json")
    ncpus = len(json.loads(r.stdout)["pus"]) if r.returncode == 0 and "pus" in json.loads(r.stdout) else os.cpu_count()
    limit = 4 * ncpus
    ok = tesson_cmd("run", "--dry-run", "--format", "json", "-n", str(limit), "-u", "pu", "img")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["shards"]) == limit
    refused = tesson_cmd("run", "--dry-run", "-n", str(limit + 1), "-u", "pu", "img")
    assert refused.returncode == 2
    line = _one_line(refused)
    assert "--force" in line and str(limit) in line, line
    forced = tesson_cmd("run", "--dry-run", "--force", "--format", "json", "-n", str(limit + 1), "-u", "pu", "img")
    assert forced.returncode == 0, forced.stderr
    assert len(json.loads(forced.stdout)["shards"]) == limit + 1
    too_many = tesson_cmd("run", "--dry-run", "--force", "-n", "10000000", "img", timeout=20)
    assert too_many.returncode == 2
    assert "at most" in _one_line(too_many)


@pytest.mark.parametrize("verb", [["run", "img"], ["ps"], ["stop"], ["repair"], ["run", "--dry-run", "img"]])
def test_an_empty_group_name_is_a_usage_error_everywhere(verb):
    r = tesson_cmd(verb[0], "-g", "", *verb[1:], timeout=20)
    assert r.returncode == 2, (verb, r.stdout, r.stderr)
    assert "group name" in _one_line(r)


@pytest.mark.parametrize(
    "opts, needle",
    [
        (["-p", "80:80:80:80"], "port spec"),
        (["-p", "8080:80", "--lb-method", "bogus method"], "method"),
        (["--gorb", "nodevice0://127.0.0.1:4672"], "nodevice0"),
        (["--gorb", "lo://127.0.0.1:99999"], "99999"),
        (["--lb", "none", "--lb-method", "random"], "--lb-method"),
    ],
)
def test_dry_run_checks_what_run_checks(opts, needle):
    r = tesson_cmd("run", "--dry-run", *opts, "img", env=NO_ENV_GORB, timeout=20)
    assert r.returncode == 2, (opts, r.stderr)
    assert needle in _one_line(r)


def _config(tmp_path, body) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(body, indent=1))
    return str(path)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"Entrypoint": {"a": 1}}, "Entrypoint"),
        ({"Entrypoint": ["/bin/sh", 1]}, "Entrypoint"),
        ({"Cmd": [None]}, "Cmd"),
        ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}}, "-p"),
        ({"HostConfig": {"PublishAllPorts": True}}, "-p"),
    ],
)
def test_config_shapes_refused_locally(tmp_path, body, needle):
    cfg = _config(tmp_path, body)
    for extra in ([], ["--dry-run"]):
        r = tesson_cmd("run", *extra, "-c", cfg, "-p", "8080:80", "--lb", "nginx", "-g", "t10-cfg", "img", timeout=20)
        assert r.returncode == 2, (body, extra, r.stderr)
        assert needle in _one_line(r)


@pytest.mark.parametrize(
    "host, what",
    [
        ({"Privileged": True}, "Privileged"),
        ({"Binds": ["/:/host"]}, "/"),
        ({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}, "docker.sock"),
        ({"Mounts": [{"Type": "bind", "Source": "/run/docker.sock", "Target": "/s"}]}, "docker.sock"),
        ({"PidMode": "host"}, "PidMode"),
        ({"IpcMode": "host"}, "IpcMode"),
        ({"NetworkMode": "host"}, "NetworkMode"),
        ({"CapAdd": ["SYS_ADMIN"]}, "CapAdd"),
        ({"SecurityOpt": ["seccomp=unconfined"]}, "SecurityOpt"),
        ({"Devices": [{"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem", "CgroupPermissions": "rwm"}]}, "Devices"),
    ],
)
def test_configs_that_grant_host_power_need_allow_privileged(tmp_path, host, what):
    cfg = _config(tmp_path, {"HostConfig": host})
    r = tesson_cmd("run", "--dry-run", "-c", cfg, "--lb", "none", "img", timeout=20)
    assert r.returncode == 2, (host, r.stderr)
    line = _one_line(r)
    assert "--allow-privileged" in line and what in line, line
    ok = tesson_cmd("run", "--dry-run", "--allow-privileged", "-c", cfg, "--lb", "none", "img", timeout=20)
    assert ok.returncode == 0, ok.stderr


def test_config_secrets_stay_out_of_labels_and_repair_still_recreates(group, tmp_path, docker_client, shard_image):
    secret = "s3cr3t-token-value"
    cfg = _config(tmp_path, {"Env": [f"API_TOKEN={secret}"], "Labels": {"team": "blue"}})
    r = tesson_cmd("run", "-g", group, "-c", cfg, "--lb", "none", "-u", "pu", "-n", "2", shard_image)
    assert r.returncode == 0, r.stderr
    cs, _ = _labelled(docker_client, group)
    assert len(cs) == 2
    for c in cs:
        labels = docker_client.inspect_container(c["Id"])["Config"]["Labels"]
        assert not any(secret in v for v in labels.values()), labels
        assert labels.get("team") == "blue"
    # repair must still recreate a vanished shard with the same config (recovered from a survivor)
    victim = next(c for c in cs if c["Labels"]["io.tesson.shard"] == "1")
    docker_client.remove_container(victim["Id"], force=True)
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    new = docker_client.inspect_container(f"{group}-1")
    assert f"API_TOKEN={secret}" in new["Config"]["Env"]
    assert not any(secret in v for v in new["Config"]["Labels"].values())


# --- interrupts ----------------------------------------------------------------------------------

def _popen_run(*args):
    return subprocess.Popen([sys.executable, "-m", "tesson", "run", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_while_shards_are_still_being_submitted_stops_everything(group, docker_client, shard_image):
    proc = _popen_run("-g", group, "--lb", "none", "--force", "-u", "pu", "-n", "400", shard_image)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # interrupt once some shards exist: the pool is still fed
            if len(_labelled(docker_client, group)[0]) >= 4:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no shard was created within 60 s")
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 30, f"tesson took {took:.1f} s to stop after Ctrl-C"
    time.sleep(3)  # nothing may still be creating containers behind our back
    assert _labelled(docker_client, group)[0] == []


def test_sigterm_during_run_also_undoes_it(group, docker_client, shard_image):
    proc = _popen_run("-g", group, "--lb", "none", "--force", "-u", "pu", "-n", "40", shard_image)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _labelled(docker_client, group)[0]:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 143), err
    time.sleep(2)
    assert _labelled(docker_client, group)[0] == []


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_ctrl_c_around_the_end_of_a_run_is_never_half_done(group, docker_client, shard_image, delay):
    """Interrupted as the last shard is up: either the run finished and says so (exit 0, group
    running) or it was undone and says so (exit 130, nothing left); never 'interrupted' + a group."""
    proc = _popen_run("-g", group, "--lb", "none", "-u", "pu", "-n", "2", shard_image)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cs = _labelled(docker_client, group)[0]
            if len(cs) == 2 and all(c["State"] == "running" for c in cs):
                break
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    left = _labelled(docker_client, group)[0]
    if proc.returncode == 0:
        assert len(left) == 2 and all(c["State"] == "running" for c in left), left
        assert "interrupted" not in err
    else:
        assert proc.returncode == 130, err
        assert left == [], f"interrupted (exit 130) but the group stayed: {err}"


# --- races ---------------------------------------------------------------------------------------

def test_concurrent_runs_of_one_group_with_the_balancer_one_winner_no_network_left(group, docker_client, shard_image, tesson_image):
    # 8 trials (about 4 s each): the race this guards against showed in 9 of 16 trials before the fix
    for trial in range(8):
        results: list = []

        def one(results=results):
            results.append(tesson_cmd("run", "-g", group, "--lb", "nginx", "-p", "127.0.0.1::8080",
                                      "--lb-image", tesson_image, "-u", "pu", "-n", "1", shard_image))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 1], (trial, [r.stderr for r in results])
        loser = next(r for r in results if r.returncode == 1)
        assert "already in use" in _one_line(loser)
        r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
        assert r.returncode == 0, (trial, r.stderr)
        cs, ns = _labelled(docker_client, group)
        assert cs == [] and ns == [], (trial, cs, ns)
        assert docker_client.networks(names=[f"tesson-{group}"]) == [], trial


def test_stop_purge_removes_a_groups_network_with_no_container_left(group, docker_client):
    """A network labelled with the group and nothing else (a crashed run) is removed by stop --purge."""
    docker_client.create_network(f"tesson-{group}", labels={"io.tesson.group": group, "io.tesson.role": "lb"})
    r = tesson_cmd("stop", "-g", group, "--purge")
    assert r.returncode == 0, r.stderr
    assert _labelled(docker_client, group)[1] == []
    again = tesson_cmd("stop", "-g", group, "--purge")
    assert again.returncode == 1 and "no group named" in _one_line(again)


# --- Gorb -----------------------------------------------------------------------------------------

def test_stop_purge_clears_gorb_after_a_failed_rollback(gorb, group, docker_client, shard_image):
    uri = gorb.uri()
    gorb.fail_after(4, mode="500")  # GET, PUT service, PUT backend 0, PUT backend 1 -> then all fail
    r = tesson_cmd("run", "-g", group, "--gorb", uri, "-p", "8080", "-u", "pu", "-n", "3", shard_image, env=NO_ENV_GORB)
    assert r.returncode == 1, r.stderr
    assert _labelled(docker_client, group)[0] == []
    gorb.fail_after(10**6)  # Gorb answers again
    assert gorb.state().get("services"), "the failing rollback should have left Gorb entries behind"
    r = tesson_cmd("stop", "-g", group, "--purge", "--gorb", uri, env=NO_ENV_GORB)
    assert r.returncode == 0, r.stderr
    assert not any(k.startswith(f"{group}-") for k in gorb.state().get("services", {})), gorb.state()
    r = tesson_cmd("run", "-g", group, "--gorb", uri, "-p", "8080", "-u", "pu", "-n", "1", shard_image, env=NO_ENV_GORB)
    assert r.returncode == 0, r.stderr


# --- ps tells the truth about the front door ------------------------------------------------------

def test_ps_headline_is_degraded_when_the_balancer_is_gone(group, docker_client, shard_image, tesson_image):
    r = tesson_cmd("run", "-g", group, "--lb", "nginx", "-p", "127.0.0.1::8080", "--lb-image", tesson_image,
                   "-u", "pu", "-n", "2", shard_image)
    assert r.returncode == 0, r.stderr
    docker_client.remove_container(f"{group}-lb", force=True)
    r = tesson_cmd("ps", "-g", group, "--json")
    (doc,) = json.loads(r.stdout)
    assert doc["status"].startswith("degraded"), doc["status"]
    r = tesson_cmd("ps", "-g", group)
    assert "degraded" in r.stdout.splitlines()[0], r.stdout
