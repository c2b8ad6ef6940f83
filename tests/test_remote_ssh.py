"""An ``ssh://`` daemon (issue 16), against an sshd the test runs itself: Debian's /usr/sbin/sshd
bound to 127.0.0.1 on a free port, with its own config, a throwaway host key and a throwaway client
key (authorized for root, from 127.0.0.1 only, with ``restrict``: no pty, no forwarding), all in
the test's own folder. The host's sshd config and ~/.ssh are never read or written: the client
runs through a wrapper ``ssh`` first on PATH that adds ``-F`` with the test's client config
(its key, its known_hosts holding the throwaway host key, strict host key checking, batch mode).

tesson reaches the daemon through ``ssh ... docker system dial-stdio`` (docker-py's
``use_ssh_client``), recognises it as this machine from its facts, and ``ps``, ``ls`` and
``topology`` work through it; a daemon it cannot reach is one line, exit 1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require, tesson_cmd

pytestmark = pytest.mark.docker

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"  # Debian's sshd refuses to start without it (the package makes it at boot)
HOME_SSH = Path(os.path.expanduser("~root")) / ".ssh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tesson-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.log = folder / "sshd.log"
        host_pub = _keygen(folder / "host_key")
        client_pub = _keygen(folder / "id_key")
        (folder / "authorized_keys").write_text(f'restrict,from="127.0.0.1" {client_pub}\n')
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub.split()[:2])}\n")
        (folder / "sshd_config").write_text("\n".join([
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {folder / 'host_key'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "AllowUsers root@127.0.0.1",
            "StrictModes no",  # the folder is the test's (0700), but /tmp above it is world-writable
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "LogLevel VERBOSE",
            "",
        ]))
        (folder / "ssh_config").write_text("\n".join([
            "Host *",
            f"  IdentityFile {folder / 'id_key'}",
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            f"  UserKnownHostsFile {folder / 'known_hosts'}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "",
        ]))
        bindir = folder / "bin"
        bindir.mkdir()
        wrapper = bindir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {folder / "ssh_config"} "$@"\n')
        wrapper.chmod(0o755)
        self.path = f"{bindir}:{os.environ.get('PATH', '')}"
        self.made_privsep_dir = not os.path.isdir(PRIVSEP_DIR)
        if self.made_privsep_dir:
            os.makedirs(PRIVSEP_DIR, mode=0o755)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise AssertionError(f"sshd did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def url(self, user: str = "root", port: int | None = None) -> str:
        return f"ssh://{user}@127.0.0.1:{port or self.port}"

    def accepted(self) -> int:
        """How many logins sshd accepted so far (its log)."""
        return self.log.read_text().count("Accepted publickey for root")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.made_privsep_dir:
            try:
                os.rmdir(PRIVSEP_DIR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, docker_client):
    require(os.geteuid() == 0, "the test's sshd logs in as root (the daemon's socket is root's)")
    require(os.access(SSHD, os.X_OK), f"{SSHD} is needed (Debian's openssh-server; .ci/run installs it)")
    require(shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None,
            "ssh and ssh-keygen are needed (Debian's openssh-client)")
    require(shutil.which("docker") is not None, "the docker CLI is needed: sshd runs 'docker system dial-stdio'")
    had_home_ssh = HOME_SSH.exists()
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.close()
    assert HOME_SSH.exists() == had_home_ssh  # ~/.ssh neither made nor removed


def via(sshd: Sshd, tmp_path: Path, *args: str, url: str | None = None):
    env = {"DOCKER_HOST": url or sshd.url(), "PATH": sshd.path, "TESSON_PROBE": "", "TESSON_FSROOT": "",
           "TESSON_CACHE_DIR": str(tmp_path / "cache")}
    return tesson_cmd(*args, env=env)


def local(*args: str):
    return tesson_cmd(*args, env={"DOCKER_HOST": "", "TESSON_PROBE": "", "TESSON_FSROOT": ""})


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def test_an_ssh_daemon_on_this_machine_is_recognised_as_local(sshd, tmp_path):
    before = sshd.accepted()
    doc = json.loads(ok(via(sshd, tmp_path, "topology", "--format", "json")).stdout)
    assert sshd.accepted() > before  # it really went through ssh
    assert doc["source"]["kind"] == "local" and sshd.url() in doc["source"]["where"], doc["source"]
    assert not (tmp_path / "cache" / "probe").exists()  # no probe: the daemon's host is this one
    doc.pop("source")
    mine = json.loads(ok(local("topology", "--format", "json")).stdout)
    mine.pop("source")
    assert doc == mine


def test_ps_ls_and_stop_through_ssh(sshd, tmp_path, shard_image, docker_client):
    group = f"t16-ssh-{os.getpid() % 100000}"
    try:
        ok(local("run", "-g", group, "--lb", "none", "-n", "1", "-p", "8080", shard_image))
        before = sshd.accepted()
        (doc,) = json.loads(ok(via(sshd, tmp_path, "ps", "-g", group, "--json")).stdout)
        assert doc["group"] == group and doc["shards"][0]["state"] == "running", doc
        assert [s["name"] for s in doc["shards"]] == [f"{group}-0"]
        assert group in ok(via(sshd, tmp_path, "ls", "-q")).stdout.split()
        ok(via(sshd, tmp_path, "stop", "-g", group, "--purge", "-t", "1"))
        assert sshd.accepted() > before
        assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}) == []
    finally:
        for c in docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}):
            docker_client.remove_container(c["Id"], force=True, v=True)


@pytest.mark.parametrize("how, says", [
    ("closed port", "Connection refused"),
    ("user not allowed", "Permission denied"),
])
def test_an_ssh_daemon_that_cannot_be_reached_is_one_line(sshd, tmp_path, how, says):
    url = sshd.url(port=_free_port()) if how == "closed port" else sshd.url(user="nobody")
    r = via(sshd, tmp_path, "ps", url=url)
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"tesson: cannot reach the Docker daemon at DOCKER_HOST={url}: ") and says in line, line


@pytest.mark.parametrize("url, says", [
    ("ssh://root@127.0.0.1:abc", "is not a number from 1 to 65535"),
    ("ssh://root@127.0.0.1:99999", "is not a number from 1 to 65535"),
    ("ssh://", "names no host"),
])
def test_a_malformed_ssh_address_is_one_line(url, says):
    """Refused before ssh runs: no traceback, one line naming the address."""
    r = tesson_cmd("ls", env={"DOCKER_HOST": url}, timeout=60)
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"tesson: cannot reach the Docker daemon at DOCKER_HOST={url}: ") and says in line, line
    assert "Traceback" not in r.stderr
