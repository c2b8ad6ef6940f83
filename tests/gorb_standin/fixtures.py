"""pytest fixtures that start the Gorb stand-in as a container through pytest-docker.

pytest-docker drives a compose CLI; this machine (and CI, see .ci/run) has Debian's
``docker-compose`` 1.29 rather than the compose v2 plugin, so the fixtures pytest-docker reads its
command, file, project name and setup from are overridden here. Test modules import them:

    from tests.gorb_standin.fixtures import *  # noqa: F403
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.gorb.yml"
BASE_IMAGE = os.environ.get("TESSON_BASE_IMAGE", "tesson-base:bookworm")
SERVICE = "gorb"
INNER_PORT = 4672

__all__ = [
    "docker_compose_command",
    "docker_compose_file",
    "docker_compose_project_name",
    "docker_setup",
    "docker_cleanup",
    "gorb",
    "gorb_standin_session",
    "Standin",
]


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    # one project per pytest process, so two test runs on the machine do not share a stand-in
    return f"t5-gorb-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup():
    return ["up --build -d"]  # compose 1.29 has no --wait; the fixture below waits for an answer


@pytest.fixture(scope="session")
def docker_cleanup():
    return ["down -v"]


class Standin:
    """The running stand-in: its URL on 127.0.0.1, and the test-only ``/_standin/`` hooks."""

    def __init__(self, compose: list[str]):
        self.compose = compose
        self.port = 0
        self.refresh_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, device: str = "lo") -> str:
        return f"{device}://127.0.0.1:{self.port}"

    def _compose(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run([*self.compose, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
        return r.stdout

    def refresh_port(self) -> None:
        out = self._compose("port", SERVICE, str(INNER_PORT)).strip().splitlines()
        self.port = int(out[-1].rsplit(":", 1)[1])

    def call(self, method: str, path: str, body=None):
        """A raw request (stdlib only, so the client under test is not used to check itself)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        text = raw.decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def alive(self) -> bool:
        try:
            return self.call("GET", "/service")[0] == 200
        except OSError:
            return False

    def wait(self, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Gorb stand-in did not answer on {self.url} within {timeout}s")

    def reset(self) -> None:
        if not self.alive():
            self.start()
        assert self.call("POST", "/_standin/reset")[0] == 200

    def journal(self) -> list[dict]:
        return self.call("GET", "/_standin/journal")[1]

    def calls(self) -> list[tuple]:
        """The journal as ``(method, path, body)``, for comparing order and content."""
        return [(e["method"], e["path"], e["body"]) for e in self.journal()]

    def fail_after(self, after: int, mode: str = "500", times: int | None = None) -> None:
        assert self.call("POST", "/_standin/fail-after", {"after": after, "mode": mode, "times": times})[0] == 200

    def state(self) -> dict:
        return self.call("GET", "/_standin/state")[1]

    def set_backend(self, service: str, backend: str, status: int, health: float) -> None:
        body = {"service": service, "backend": backend, "status": status, "health": health}
        assert self.call("POST", "/_standin/backend-status", body)[0] == 200

    def stop(self) -> None:
        self._compose("stop", "-t", "1", SERVICE)

    def start(self) -> None:
        """Start it again (after ``stop`` or a fail-after ``exit``); its published port may change."""
        self._compose("start", SERVICE)
        self.refresh_port()
        self.wait()


def _base_image_ready() -> tuple[bool, str]:
    r = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, text=True)
    if r.returncode == 0:
        return True, ""
    script = ROOT / "scripts" / "base-image"
    if not script.exists():
        return False, f"{BASE_IMAGE} is missing and scripts/base-image is not there to make it"
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=1200)
    return r.returncode == 0, f"scripts/base-image failed: {r.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def gorb_standin_session(request, docker_compose_command, docker_compose_file, docker_compose_project_name):
    docker_ok = shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True
    ).returncode == 0
    require(docker_ok, "a running Docker daemon is needed for the Gorb stand-in")
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed (apt-get install docker-compose)")
    ok, why = _base_image_ready()
    require(ok, why)
    request.getfixturevalue("docker_services")  # docker-compose up --build -d, and down -v at the end
    standin = Standin(
        [docker_compose_command, "-f", docker_compose_file, "-p", docker_compose_project_name]
    )
    standin.wait()
    return standin


@pytest.fixture
def gorb(gorb_standin_session) -> Standin:
    """The stand-in, emptied (state, journal, faults) for this test."""
    gorb_standin_session.reset()
    return gorb_standin_session
