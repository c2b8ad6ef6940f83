"""The tesson image, `tesson demo-server`, and the `docker tesson` CLI plugin (shim and installer).

The image is built the CI way (scripts/build-image, through the ``tesson_image`` fixture) and every
Docker test talks to the real daemon. The end-to-end group tests are in test_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import tesson
from tests.conftest import ROOT, read_pty, require, tesson_cmd

SHIM = ROOT / "docker-plugin" / "docker-tesson"
INSTALL = ROOT / "docker-plugin" / "install"
PREFIX = "t6-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10.0) -> dict:
    """GET a JSON answer, retrying while the server comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                assert r.headers["Content-Type"] == "application/json"
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def allowed_cpus_of_this_process() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def docker_clients() -> list[str]:
    """Every docker CLI on this machine (Debian's and the first on PATH, when they differ)."""
    found = []
    for c in (shutil.which("docker"), "/usr/bin/docker"):
        if c and os.path.exists(c) and os.path.realpath(c) not in [os.path.realpath(f) for f in found]:
            found.append(c)
    return found


def docker(*args, env=None, timeout=120, **kw):
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, **kw)


# --- demo-server, as a host process -----------------------------------------------------------------


@pytest.fixture
def demo_server():
    """Start ``tesson demo-server`` on a free port; yields (process, port)."""
    procs = []

    def start(*extra, env=None, cpus=None):
        port = free_port()
        full_env = dict(os.environ, **(env or {}))
        p = subprocess.Popen(
            [sys.executable, "-m", "tesson", "demo-server", "--host", "127.0.0.1", "--port", str(port), *extra],
            env=full_env, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        procs.append(p)
        return p, port

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_demo_server_says_who_answered(demo_server):
    cpu = max(os.sched_getaffinity(0))
    p, port = demo_server(env={"TESSON_GROUP": "t6-demo", "TESSON_UID": "3"}, cpus={cpu})
    for path in ("/", "/any/path?x=1"):
        doc = get_json(f"http://127.0.0.1:{port}{path}")
        assert doc == {"group": "t6-demo", "shard": 3, "hostname": socket.gethostname(), "cpus": str(cpu)}
    # HEAD answers too, without a body.
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", method="HEAD")
    with urllib.request.urlopen(req, timeout=3) as r:
        assert r.status == 200 and r.read() == b""


def test_demo_server_outside_a_group(demo_server):
    env = {k: v for k, v in os.environ.items() if k not in ("TESSON_GROUP", "TESSON_UID")}
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "tesson", "demo-server", "--host", "127.0.0.1", "--port", str(port)],
                         env=env, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        doc = get_json(f"http://127.0.0.1:{port}/")
        assert doc["group"] is None and doc["shard"] is None
        assert doc["cpus"] == allowed_cpus_of_this_process()
    finally:
        p.kill()
        p.wait()


def test_demo_server_is_threaded(demo_server):
    """A client that connects and sends nothing must not hold up the others."""
    p, port = demo_server()
    get_json(f"http://127.0.0.1:{port}/")
    with socket.create_connection(("127.0.0.1", port)) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\n")  # an unfinished request
        t0 = time.monotonic()
        get_json(f"http://127.0.0.1:{port}/", timeout=3)
        assert time.monotonic() - t0 < 2


def test_demo_server_stops_at_once_on_sigterm(demo_server):
    p, port = demo_server()
    get_json(f"http://127.0.0.1:{port}/")
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2
    assert "Traceback" not in p.stderr.read()


def test_demo_server_port_in_use_is_one_line_exit_1(demo_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "tesson", "demo-server", "--host", "127.0.0.1", "--port", str(port)],
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and str(port) in r.stderr
    assert "Traceback" not in r.stderr


def test_demo_server_bad_port_is_usage_error():
    for bad in ("0", "70000", "http"):
        r = subprocess.run([sys.executable, "-m", "tesson", "demo-server", "--port", bad],
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.stderr)


# --- the image --------------------------------------------------------------------------------------


def test_image_is_small_labelled_and_runs_tesson(tesson_image, docker_client):
    info = docker_client.inspect_image(tesson_image)
    assert info["Size"] < 200 * 1024 * 1024, f"image is {info['Size'] / 2**20:.0f} MB"
    cfg = info["Config"]
    assert cfg["Entrypoint"] == ["tesson"]
    labels = cfg["Labels"] or {}
    assert labels["org.opencontainers.image.title"] == "tesson"
    assert labels["org.opencontainers.image.version"] == tesson.__version__
    for key in ("created", "revision", "description", "licenses", "source"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    r = docker("run", "--rm", tesson_image, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tesson {tesson.__version__}", r.stderr
    # With no arguments it shows the help and succeeds.
    r = docker("run", "--rm", tesson_image)
    assert r.returncode == 0 and "demo-server" in r.stdout


def test_image_carries_the_code_under_test(tesson_image):
    """The image is rebuilt from this tree: its cli.py is this tree's cli.py."""
    here = (ROOT / "tesson" / "cli.py").read_text()
    r = docker("run", "--rm", "--entrypoint", "python3", tesson_image, "-c",
               "import inspect, tesson.cli; print(inspect.getsource(tesson.cli), end='')")
    assert r.returncode == 0, r.stderr
    assert r.stdout == here


def test_image_nginx_has_the_stream_module(tesson_image):
    """The image is its own group balancer: nginx loads the stream module and proxies TCP."""
    conf = (
        "include /etc/nginx/modules-enabled/*.conf;\n"
        "pid /tmp/nginx.pid;\nerror_log stderr;\nevents {}\n"
        "stream { upstream u { server 127.0.0.1:1; } server { listen 127.0.0.1:9; proxy_pass u; } }\n"
    )
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tesson_image, "-c",
               f"printf '%s' '{conf}' > /tmp/t.conf && nginx -V && nginx -t -c /tmp/t.conf")
    assert r.returncode == 0, r.stderr
    assert "nginx version: nginx/" in r.stderr
    assert "test is successful" in r.stderr


def test_image_demo_server_reports_its_pinning_and_stops_fast(tesson_image, docker_client):
    cpu = max(os.sched_getaffinity(0))
    name = f"{PREFIX}demo-server"
    docker("rm", "-f", name)
    r = docker("run", "-d", "--name", name, "--cpuset-cpus", str(cpu), "-e", "TESSON_GROUP=t6-img",
               "-e", "TESSON_UID=1", "-p", "127.0.0.1::8080", tesson_image, "demo-server")
    assert r.returncode == 0, r.stderr
    try:
        port = int(docker_client.port(name, 8080)[0]["HostPort"])
        doc = get_json(f"http://127.0.0.1:{port}/")
        hostname = docker_client.inspect_container(name)["Config"]["Hostname"]
        assert doc == {"group": "t6-img", "shard": 1, "hostname": hostname, "cpus": str(cpu)}
        t0 = time.monotonic()
        assert docker("stop", name).returncode == 0
        assert time.monotonic() - t0 < 5, "demo-server ignored SIGTERM"
        assert docker_client.inspect_container(name)["State"]["ExitCode"] == 0
    finally:
        docker("rm", "-f", name)


def test_image_reads_the_host_topology(tesson_image):
    """With the host's /sys mounted, tesson in the (unpinned) container sees the host's CPUs; pinned,
    it sees its own cgroup's cpuset, found through the container's /proc/self/cgroup."""
    host = subprocess.run([sys.executable, "-m", "tesson", "topology", "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    require(host.returncode == 0, f"tesson topology does not work on this host: {host.stderr.strip()}")
    host_doc = json.loads(host.stdout)
    r = docker("run", "--rm", "-v", "/sys:/sys:ro", tesson_image, "topology", "--format", "json")
    assert r.returncode == 0, r.stderr
    inside = json.loads(r.stdout)
    assert inside["pus"] == host_doc["pus"]
    assert inside["cores"] == host_doc["cores"]
    assert [n["id"] for n in inside["numa_nodes"]] == [n["id"] for n in host_doc["numa_nodes"]]
    if len(host_doc["pus"]) > 1:
        cpu = host_doc["pus"][-1]
        r = docker("run", "--rm", "--cpuset-cpus", str(cpu), "-v", "/sys:/sys:ro", tesson_image,
                   "topology", "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pus"] == [cpu]


def test_plain_docker_run_ps(tesson_image):
    """The README's `docker run ... tesson ps` works with just the socket and /sys."""
    r = docker("run", "--rm", "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", "/sys:/sys:ro",
               tesson_image, "ps", "--json")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


# --- the plugin -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, tesson_image):
    """Environment with the plugin installed in a temporary DOCKER_CONFIG, running the image under test."""
    config = tmp_path_factory.mktemp("docker-config")
    r = subprocess.run([str(INSTALL)], env=dict(os.environ, DOCKER_CONFIG=str(config)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    installed = config / "cli-plugins" / "docker-tesson"
    assert installed.is_file() and os.access(installed, os.X_OK)
    assert installed.read_bytes() == SHIM.read_bytes()
    return dict(os.environ, DOCKER_CONFIG=str(config), TESSON_IMAGE=tesson_image)


def test_install_into_a_given_dir(tmp_path):
    r = subprocess.run([str(INSTALL), str(tmp_path / "plugins")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.access(tmp_path / "plugins" / "docker-tesson", os.X_OK)


def test_plugin_metadata():
    r = subprocess.run([str(SHIM), "docker-cli-plugin-metadata"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    meta = json.loads(r.stdout)
    assert meta["SchemaVersion"] == "0.1.0"
    assert meta["Version"] == tesson.__version__
    for key in ("Vendor", "ShortDescription", "URL"):
        assert isinstance(meta[key], str) and meta[key], key


@pytest.mark.parametrize("client", docker_clients())
def test_docker_help_lists_tesson(plugin_env, client):
    r = subprocess.run([client, "--help"], capture_output=True, text=True, env=plugin_env, timeout=60)
    assert r.returncode == 0
    lines = [line for line in r.stdout.splitlines() if line.strip().startswith("tesson")]
    assert lines, r.stdout
    assert "cores" in lines[0]
    # and the plugin runs through that same client
    r = subprocess.run([client, "tesson", "--version"], capture_output=True, text=True, env=plugin_env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"tesson {tesson.__version__}", r.stderr


def test_docker_tesson_help_shows_the_verbs(plugin_env):
    r = docker("tesson", "--help", env=plugin_env)
    assert r.returncode == 0, r.stderr
    for verb in ("run", "ps", "stop", "topology", "repair", "demo-server"):
        assert f"    {verb} " in r.stdout, verb


@pytest.mark.parametrize("client", docker_clients())
def test_docker_help_tesson_reads_as_a_plugin(plugin_env, client):
    """`docker help tesson [VERB]` (the CLI runs the plugin with `help tesson [VERB]`), usage and
    hints say `docker tesson`, `docker tesson version`, and ps of a group that is not there, through
    each docker CLI."""
    def run(*args):
        return subprocess.run([client, *args], capture_output=True, text=True, env=plugin_env, timeout=120,
                              stdin=subprocess.DEVNULL)

    r = run("help", "tesson")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: docker tesson [-h]") and "global options:" in r.stdout
    assert r.stdout == run("tesson", "--help").stdout
    r = run("help", "tesson", "stop")
    assert r.returncode == 0 and r.stdout.startswith("usage: docker tesson stop "), r.stderr
    assert "  docker tesson stop web " in r.stdout and "--log-format" not in r.stdout
    r = run("tesson", "stop")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "docker tesson stop: error: the following argument is required: GROUP (see 'docker tesson stop --help')"]
    r = run("tesson", "logs", f"{PREFIX}no-such-group")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"docker tesson: no group named '{PREFIX}no-such-group' (docker tesson ls lists every group)"]
    r = run("tesson", "version")
    assert r.returncode == 0 and f"tesson:        {tesson.__version__}" in r.stdout, r.stderr
    assert "Docker daemon:" in r.stdout
    r = run("tesson", "ps", f"{PREFIX}no-such-group")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_exit_codes_come_back_through_the_shim(plugin_env):
    r = docker("tesson", "run", "-n", "0", "img", env=plugin_env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "at least 1" in r.stderr, r.stderr
    r = docker("tesson", "stop", "-g", f"{PREFIX}no-such-group", env=plugin_env)
    assert r.returncode == 1, r.stderr
    assert f"{PREFIX}no-such-group" in r.stderr and "Traceback" not in r.stderr
    r = docker("tesson", "--version", env=plugin_env)
    assert r.returncode == 0


def test_tesson_image_picks_the_image(plugin_env, tesson_image):
    other = f"{PREFIX}tesson:override"
    assert docker("tag", tesson_image, other).returncode == 0
    try:
        r = docker("tesson", "--version", env=dict(plugin_env, TESSON_IMAGE=other))
        assert r.returncode == 0, r.stderr
        r = docker("tesson", "--version", env=dict(plugin_env, TESSON_IMAGE=f"{PREFIX}no-such-image:none"))
        assert r.returncode != 0
        assert f"{PREFIX}no-such-image" in r.stderr
        # docker's words, in tesson's: one line, no pointer to `docker run --help`
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("docker tesson: ") and "docker run --help" not in r.stderr, r.stderr
    finally:
        docker("rmi", other)


def test_global_options_reach_the_same_daemon(plugin_env, tmp_path):
    """`docker -H X tesson` and `docker --context C tesson` run tesson through that daemon."""
    sock = "/var/run/docker.sock"
    require(os.path.exists(sock), "the daemon does not listen on /var/run/docker.sock")
    r = docker("-H", f"unix://{sock}", "tesson", "--version", env=plugin_env)
    assert r.returncode == 0, r.stderr
    bogus = tmp_path / "no-daemon.sock"
    r = docker("-H", f"unix://{bogus}", "tesson", "--version", env=plugin_env)
    assert r.returncode != 0 and str(bogus) in r.stderr
    ctx = f"{PREFIX}ctx-{os.getpid()}"
    assert docker("context", "create", ctx, "--docker", f"host=unix://{bogus}", env=plugin_env).returncode == 0
    try:
        r = docker("--context", ctx, "tesson", "--version", env=plugin_env)
        assert r.returncode != 0 and str(bogus) in r.stderr
        r = docker("tesson", "--version", env=dict(plugin_env, DOCKER_CONTEXT=ctx))
        assert r.returncode != 0 and str(bogus) in r.stderr
    finally:
        docker("context", "rm", "-f", ctx, env=plugin_env)


def test_under_a_terminal(plugin_env):
    """On a terminal the shim adds -i -t; output and exit codes still come back."""
    import pty

    def run_in_pty(*args):
        master, slave = pty.openpty()
        p = subprocess.Popen(["docker", *args], stdin=slave, stdout=slave, stderr=slave, env=plugin_env)
        os.close(slave)
        out = read_pty(master)
        return p.wait(timeout=60), out.decode(errors="replace")

    rc, out = run_in_pty("tesson", "--version")
    assert rc == 0 and f"tesson {tesson.__version__}" in out
    rc, out = run_in_pty("tesson", "frobnicate")
    assert rc == 2 and "invalid choice" in out


def test_missing_socket_is_one_line_and_makes_nothing(plugin_env, tmp_path):
    """A socket path that does not exist: one line, and no empty folder made in its place (as
    `-v` would)."""
    sock = tmp_path / "nowhere" / "docker.sock"
    for client in docker_clients():
        r = subprocess.run([client, "tesson", "ps"], capture_output=True, text=True, timeout=60,
                           env=dict(plugin_env, TESSON_DOCKER_SOCKET=str(sock)))
        assert r.returncode == 125, (client, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"docker tesson: no Docker socket at {sock} on the daemon's machine: "
            "set TESSON_DOCKER_SOCKET to the daemon's socket"], (client, r.stderr)
        assert not (tmp_path / "nowhere").exists()


def plugin_processes(plugin_env) -> list:
    """Processes running the installed plugin of ``plugin_env``."""
    import psutil

    path = os.path.join(plugin_env["DOCKER_CONFIG"], "cli-plugins", "docker-tesson")
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if path in (p.info["cmdline"] or []):
            found.append(p)
    return found


def client_major(client: str) -> int:
    r = subprocess.run([client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                       timeout=30)
    return int(r.stdout.strip().split(".")[0])


@pytest.mark.parametrize("client", docker_clients())
def test_docker_complete_tesson(plugin_env, client):
    """Shell completion as each client runs it: CLI 23+ (`docker __complete tesson ...`, which
    points DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND at the plugin: the shim used to run itself
    forever), Debian's 20.10 (its bash completion runs `docker-tesson __completeNoDesc ...`).
    The verbs come within a second and no process is left behind."""
    import tesson.cli

    plugin = os.path.join(plugin_env["DOCKER_CONFIG"], "cli-plugins", "docker-tesson")
    if client_major(client) >= 23:
        cmd = [client, "__complete", "tesson"]
    else:
        cmd = [plugin, "__completeNoDesc"]
    t0 = time.monotonic()
    r = subprocess.run([*cmd, ""], capture_output=True, text=True, env=plugin_env, timeout=10)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == list(tesson.cli.VERBS), r.stdout
    assert lines[-1] == ":4"
    assert took < 1, f"completion took {took:.2f} s"
    assert plugin_processes(plugin_env) == []
    # a verb's options, and the values of one
    r = subprocess.run([*cmd, "run", "--un"], capture_output=True, text=True, env=plugin_env, timeout=10)
    assert r.stdout.splitlines()[0].split("\t")[0] == "--unit", r.stdout
    r = subprocess.run([*cmd, "run", "--unit", "nu"], capture_output=True, text=True, env=plugin_env, timeout=10)
    assert r.stdout == "numa\n:4\n"


@pytest.mark.parametrize("client", docker_clients())
def test_docker_complete_names_real_groups(plugin_env, client, shard_image, docker_client):
    group = f"{PREFIX}complete"
    plugin = os.path.join(plugin_env["DOCKER_CONFIG"], "cli-plugins", "docker-tesson")
    cmd = [client, "__complete", "tesson"] if client_major(client) >= 23 else [plugin, "__completeNoDesc"]
    r = tesson_cmd("run", "-g", group, "-n", "2", "--lb", "none", shard_image)
    try:
        assert r.returncode == 0, r.stderr
        r = subprocess.run([*cmd, "stop", "-g", f"{PREFIX}comp"], capture_output=True, text=True,
                           env=plugin_env, timeout=10)
        assert r.stdout.splitlines()[0].split("\t")[0] == group, r.stdout
        r = subprocess.run([*cmd, "repair", f"--group={PREFIX}comp"], capture_output=True, text=True,
                           env=plugin_env, timeout=10)
        assert r.stdout.splitlines()[0].split("\t")[0] == f"--group={group}", r.stdout
    finally:
        assert tesson_cmd("stop", "-g", group, "--purge", "-t", "1").returncode == 0


@pytest.mark.parametrize("how", ["timeout", "shim", "shim-tty", "cli"])
def test_sigterm_stops_the_inner_container(plugin_env, tesson_image, docker_client, how):
    """`timeout` (SIGTERM to the process group), or SIGTERM to the plugin alone (with and without
    a terminal), or to the docker CLI alone (CLI 25+ only close the plugin socket, which tesson
    in its container watches), stops tesson's container: none of it is left."""
    import pty

    import psutil

    image = f"{PREFIX}tesson:sigterm"
    assert docker("tag", tesson_image, image).returncode == 0
    env = dict(plugin_env, TESSON_IMAGE=image)
    port = str(free_port())
    try:
        if how == "timeout":
            r = subprocess.run(["timeout", "4", "docker", "tesson", "demo-server", "--port", port],
                               capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 124, r.stderr
            assert "listening" in r.stderr
        elif how == "cli":
            clis = [c for c in docker_clients() if client_major(c) >= 25]
            require(bool(clis), "no docker CLI 25 or later (the plugin socket)")
            p = subprocess.Popen([clis[0], "tesson", "demo-server", "--port", port], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
            get_json(f"http://127.0.0.1:{port}/", timeout=30)
            assert docker_client.containers(filters={"ancestor": image})
            p.send_signal(signal.SIGTERM)  # the CLI alone, not its process group
            _, err = p.communicate(timeout=30)
            assert "listening" in err
        else:
            master = None
            if how == "shim-tty":
                master, slave = pty.openpty()
                p = subprocess.Popen(["docker", "tesson", "demo-server", "--port", port], env=env,
                                     stdin=slave, stdout=slave, stderr=slave)
                os.close(slave)
            else:
                p = subprocess.Popen(["docker", "tesson", "demo-server", "--port", port], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            get_json(f"http://127.0.0.1:{port}/", timeout=30)
            assert docker_client.containers(filters={"ancestor": image})
            [shim] = [c for c in plugin_processes(env) if c.ppid() == p.pid]
            shim.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            if master is not None:
                read_pty(master)
            assert not psutil.pid_exists(shim.pid) or shim.status() == psutil.STATUS_ZOMBIE
        deadline = time.monotonic() + 10
        while docker_client.containers(all=True, filters={"ancestor": image}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert docker_client.containers(all=True, filters={"ancestor": image}) == []
        assert plugin_processes(env) == []
    finally:
        for c in docker_client.containers(all=True, filters={"ancestor": image}):
            docker_client.remove_container(c["Id"], force=True)
        docker("rmi", image)


# The arguments the shim builds, seen by a stand-in for the docker CLI that records them. The real
# CLI runs the same paths in the tests above and in test_e2e.py; this shows the exact argument list.

RECORDER = """#!/bin/sh
if [ "$1" = context ] && [ "$2" = inspect ]; then echo "unix:///run/t6-$3.sock"; exit 0; fi
for a do printf '%s\\0' "$a"; done > "$T6_RECORD"
exit 7
"""


def shim_args(tmp_path, *args, env=None, stdin=None):
    recorder = tmp_path / "docker"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    record = tmp_path / "record"
    full = {k: v for k, v in os.environ.items()
            if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "TESSON_IMAGE", "TESSON_DOCKER_SOCKET")}
    full.update(DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND=str(recorder), T6_RECORD=str(record),
                DOCKER_CONFIG=str(tmp_path / "cfg"), **(env or {}))
    r = subprocess.run([str(SHIM), *args], env=full, cwd=tmp_path, capture_output=True, text=True,
                       stdin=stdin if stdin is not None else subprocess.DEVNULL, timeout=30)
    assert r.returncode == 7, r.stderr  # the recorder's exit code, passed through
    return record.read_bytes().decode().split("\0")[:-1]


def test_shim_arguments(tmp_path):
    cfg = tmp_path / "shard config.json"
    cfg.write_text("{}")
    args = shim_args(tmp_path, "--context", "prod", "tesson", "--log-level", "debug", "run",
                     "-c", "shard config.json", "-g", "web", "-p", "80", "img:1", "sh", "-c", "x -c y")
    i = args.index("run")
    assert args[:i] == ["--context", "prod"]
    opts = args[i + 1:args.index("tesson:latest")]
    assert opts[:3] == ["--rm", "--init", "--network"] and opts[3] == "host"
    assert opts[opts.index("--cidfile") + 1].startswith("/")  # for signals: the container to stop
    assert "-i" not in opts and "-t" not in opts  # stdin is not a terminal
    # the context's socket, by a bind mount that refuses a missing source
    assert "type=bind,source=/run/t6-prod.sock,target=/var/run/docker.sock" in opts
    assert "/sys:/sys:ro" in opts
    assert "GORB_URI" in opts and "TESSON_IMAGE=tesson:latest" in opts
    # tesson says `docker tesson` in help and hints, and watches the docker CLI's plugin socket
    assert "TESSON_PROG=docker tesson" in opts and "DOCKER_CLI_PLUGIN_SOCKET" in opts
    assert f"type=bind,source={cfg},target={cfg},readonly" in opts
    tail = args[args.index("tesson:latest") + 1:]
    assert tail == ["--log-level", "debug", "run", "-c", str(cfg), "-g", "web", "-p", "80", "img:1",
                    "sh", "-c", "x -c y"]


def test_shim_arguments_other_forms(tmp_path):
    (tmp_path / "c.json").write_text("{}")
    env = {"DOCKER_HOST": "unix:///run/t6-other.sock", "TESSON_IMAGE": "reg/tesson:9"}
    args = shim_args(tmp_path, "tesson", "run", "--config=c.json", "-n", "2", "img", env=env)
    assert args[0] == "run"
    assert "type=bind,source=/run/t6-other.sock,target=/var/run/docker.sock" in args
    assert "TESSON_IMAGE=reg/tesson:9" in args
    assert args[args.index("reg/tesson:9") + 1:] == ["run", f"--config={tmp_path}/c.json", "-n", "2", "img"]
    # -cFILE, and a remote daemon: the socket on its own machine
    args = shim_args(tmp_path, "-H", "tcp://10.0.0.1:2375", "tesson", "run", f"-c{tmp_path}/c.json", "img",
                     env={"TESSON_IMAGE": "x"})
    assert args[:3] == ["-H", "tcp://10.0.0.1:2375", "run"]
    assert "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock" in args
    assert args[-2:] == [f"-c{tmp_path}/c.json", "img"]
    # a -c after the image belongs to the shards' command: not touched, nothing mounted
    args = shim_args(tmp_path, "tesson", "run", "img", "-c", "c.json")
    assert args[-3:] == ["img", "-c", "c.json"] and not any(a.endswith(",readonly") for a in args)
    # a missing config file is left for tesson to report
    args = shim_args(tmp_path, "tesson", "run", "-c", "nope.json", "img")
    assert args[-3:] == ["-c", "nope.json", "img"]
    # `docker help tesson stop`: the CLI passes its own words, which reach tesson as they are
    args = shim_args(tmp_path, "help", "tesson", "stop")
    assert args[0] == "run" and args[-3:] == ["help", "tesson", "stop"]
    # by hand, without the plugin name
    args = shim_args(tmp_path, "ps", "--format", "json")
    assert args[0] == "run" and args[-3:] == ["ps", "--format", "json"]


def test_shim_arguments_vm_sockets_and_grammar(tmp_path):
    """A socket forwarded from a VM into the user's home (Docker Desktop, Colima) is the VM's
    /var/run/docker.sock; the value of every value-taking option is skipped whatever it looks like."""
    home = tmp_path / "home"
    for endpoint in (f"unix://{home}/.docker/run/docker.sock", f"unix://{home}/.colima/default/docker.sock"):
        args = shim_args(tmp_path, "tesson", "ps", env={"DOCKER_HOST": endpoint, "HOME": str(home)})
        assert "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock" in args, endpoint
    args = shim_args(tmp_path, "tesson", "ps", env={"DOCKER_HOST": f"unix://{home}/d.sock", "HOME": str(home),
                                                     "TESSON_DOCKER_SOCKET": "/run/t6-given.sock"})
    assert "type=bind,source=/run/t6-given.sock,target=/var/run/docker.sock" in args
    # --lb-image's value looks like an image, -t's like a verb: neither ends tesson's options
    (tmp_path / "c.json").write_text("{}")
    args = shim_args(tmp_path, "tesson", "run", "--lb-image", "x:1", "--lb-cpus", "0", "-c", "c.json", "img")
    assert f"type=bind,source={tmp_path}/c.json,target={tmp_path}/c.json,readonly" in args
    assert args[-2:] == [str(tmp_path / "c.json"), "img"]
