"""Shared test fixtures.

Where a test needs something the machine lacks (hwloc, a Docker daemon), it is skipped with the reason
on a developer's machine, but fails in CI (CI=true), where .ci/run provides all of them: a skip must
never pass for a pass there. What the repository itself holds (the sysfs dumps in tests/fixtures) is
never skipped: a missing one fails (tests/dumps.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test when ``ok`` is false."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def tesson_cmd(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 120):
    """Run the real CLI in a subprocess, as a user would: returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tesson", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def hwloc():
    require(shutil.which("lstopo-no-graphics") is not None and shutil.which("hwloc-distrib") is not None,
            "hwloc is not installed (apt-get install hwloc)")
    return True


# --- Docker: a client, and a tiny shard image that proves its own pinning -------------------------

SHARD_IMAGE = "tesson-test-shard:latest"

# The shard's CGI: who answered, on which CPUs and memory nodes (as the kernel sees the process).
_SHARD_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "hostname=$(hostname)"
echo "group=$TESSON_GROUP"
echo "uid=$TESSON_UID"
echo "cpus=$TESSON_CPUS"
grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status | tr -d '\\t' | sed 's/:/=/'
"""

# PID 1 that stops at once on SIGTERM (a bare httpd as PID 1 would ignore it until SIGKILL).
_SHARD_START = """#!/bin/sh
/bin/busybox httpd -f -p "${PORT:-8080}" -h /www &
pid=$!
trap 'kill $pid; exit 0' TERM INT
wait $pid
"""


def docker_api():
    """A docker-py low-level client for the daemon the environment names, or None."""
    try:
        import docker

        client = docker.APIClient(version="auto", timeout=60)
        client.ping()
        return client
    except Exception:
        return None


def group_containers(client, group: str) -> list[dict]:
    """The group's containers, running or not (by label)."""
    return client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]})


def remove_group(client, group: str) -> None:
    """Remove everything a test's group left: its containers and networks (by label) and, for a
    kernel-door group, its nft table (which outlives the containers and would keep sending the
    group's host ports to dead addresses)."""
    for c in client.containers(all=True, filters={"label": f"io.tesson.group={group}"}):
        client.remove_container(c["Id"], force=True, v=True)
    for n in client.networks(filters={"label": f"io.tesson.group={group}"}):
        client.remove_network(n["Id"])
    if shutil.which("nft"):
        subprocess.run(["nft", "delete", "table", "ip", f"tesson-{group}"], capture_output=True)


@pytest.fixture(scope="session")
def docker_client():
    client = docker_api()
    require(client is not None, "no Docker daemon answers (start dockerd)")
    return client


@pytest.fixture
def cleanup(docker_client):
    """Groups a test names; whatever is left of them is removed afterwards (:func:`remove_group`)."""
    groups: list[str] = []
    yield groups
    for g in groups:
        remove_group(docker_client, g)


# --- A second endpoint to the same daemon: tcp://127.0.0.1:PORT (docker-py's path, a "remote" daemon) ---

class Forwarder:
    """127.0.0.1:PORT -> the daemon's unix socket, one pair of pump threads per connection."""

    def __init__(self, target: str = "/var/run/docker.sock"):
        self.target = target
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                up.connect(self.target)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    s.shutdown(how)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.server.close()


def _shard_image_tar() -> bytes:
    import io
    import tarfile
    import time

    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, data=None, mode=0o755, link=None, kind=None):
            info = tarfile.TarInfo(name)
            info.mtime = now
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif link:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "www", "www/cgi-bin", "proc", "sys", "dev", "etc", "tmp"):
            add(d, kind="dir", mode=0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", Path("/bin/busybox").read_bytes())
        for applet in ("sh", "cat", "grep", "sed", "tr", "hostname", "echo", "sleep", "kill", "httpd",
                       "env", "nc", "ls", "true", "false", "wget"):
            add(f"bin/{applet}", link="busybox")
        add("www/index.html", b"tesson test shard\n", mode=0o644)
        add("www/cgi-bin/id", _SHARD_CGI.encode())
        add("start", _SHARD_START.encode())
        add("etc/passwd", b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", mode=0o644)
        add("etc/group", b"root:x:0:\nnogroup:x:65534:\n", mode=0o644)
    return buf.getvalue()


@pytest.fixture(scope="session")
def shard_image(docker_client):
    """``tesson-test-shard:latest``: busybox httpd on 8080 answering /cgi-bin/id with
    ``hostname=``, ``group=``, ``uid=`` (TESSON_UID), ``cpus=`` (TESSON_CPUS), ``Cpus_allowed_list=``
    and ``Mems_allowed_list=`` (from /proc/self/status). Built once (docker import of Debian's
    busybox-static), reused when present. Shared by every helper's tests: do not remove it."""
    import docker.errors

    try:
        docker_client.inspect_image(SHARD_IMAGE)
        return SHARD_IMAGE
    except docker.errors.NotFound:
        pass
    require(Path("/bin/busybox").exists(), "busybox-static is not installed (apt-get install busybox-static)")
    repo, tag = SHARD_IMAGE.split(":")
    docker_client.import_image_from_data(
        _shard_image_tar(), repository=repo, tag=tag,
        changes=['CMD ["/start"]', "EXPOSE 8080/tcp", "WORKDIR /"],
    )
    docker_client.inspect_image(SHARD_IMAGE)
    return SHARD_IMAGE


def http_get(host: str, port: int, path: str = "/cgi-bin/id", timeout: float = 5.0) -> str:
    """GET a page with the stdlib, retrying for a moment while a fresh shard starts listening."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def parse_shard_answer(text: str) -> dict:
    """``key=value`` lines of the shard CGI into a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def pins_inside(client, name: str) -> str:
    """``Cpus_allowed_list`` as the shard container ``name`` reads it in its own /proc/self/status
    (its CGI answer on the host port published for 8080)."""
    info = client.inspect_container(name)
    port = int(info["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    return parse_shard_answer(http_get("127.0.0.1", port))["Cpus_allowed_list"]


# --- The tesson image, built the CI way ------------------------------------------------------------

def _build_tesson_image() -> str:
    """``tesson:latest`` built by scripts/build-image (local Debian base, host wheels, no download in
    ``docker build``), so it carries the code under test. TESSON_TEST_IMAGE=IMAGE uses that image as
    it is instead (no build)."""
    given = os.environ.get("TESSON_TEST_IMAGE")
    if given:
        return given
    base_missing = subprocess.run(["docker", "image", "inspect", "tesson-base:bookworm"],
                                  capture_output=True).returncode != 0
    if base_missing:
        require(shutil.which("debootstrap") is not None and os.geteuid() == 0,
                "the base image tesson-base:bookworm is missing and cannot be made here "
                "(scripts/base-image needs root and debootstrap)")
    r = subprocess.run([str(ROOT / "scripts" / "build-image")], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"scripts/build-image failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tesson_image(docker_client):
    """The tesson image (tool, balancer and demo shard in one), built once per session."""
    return _build_tesson_image()


def read_pty(master: int) -> bytes:
    """Everything written to a pseudo-terminal until its other side is closed; closes ``master``."""
    import os

    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return out
