"""The Docker daemon the environment names: ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``), else the local socket. Every call goes through docker-py's low-level
``APIClient``, so raw Engine API bodies pass as given and answers are plain dicts.

An ``ssh://[USER@]HOST[:PORT]`` daemon is reached as the docker CLI reaches it: through this
machine's ``ssh`` client (``ssh -l USER -p PORT -- HOST docker system dial-stdio``, docker-py's
``use_ssh_client``), so the user's ``~/.ssh/config``, keys, agent and known hosts apply, and the
other host needs the docker CLI. docker-py imports paramiko for either ssh transport, so ssh://
needs the ``ssh`` extra (``pip install 'tesson[ssh]'``). Each connection of the pool is one ssh
process, whose messages go to stderr; so that a daemon it cannot reach is still one line, the API
version is asked first by one ``ssh ... docker version`` whose stderr tesson keeps and quotes.

Failing to connect is one line naming what was tried, exit 1.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlparse

from tesson.errors import TessonError

if TYPE_CHECKING:
    from docker import APIClient

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")

T = TypeVar("T")


def target() -> str:
    """What we will try: DOCKER_HOST as given, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def describe_target() -> str:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"DOCKER_HOST={host}"
    return f"{DEFAULT_SOCKET.replace('unix://', '')} (DOCKER_HOST is not set)"


def is_remote(url: str | None = None) -> bool:
    """By the URL alone: True for a tcp/ssh daemon whose host is not a loopback name. A hint only
    (used to skip checks of this machine's free ports); whose topology to read is tesson.probe's
    decision, made from the daemon's facts."""
    url = url or target()
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    if parsed.scheme in ("unix", "npipe", "fd", ""):
        return False
    return (parsed.hostname or "") not in LOCAL_HOSTS


def _reason(exc: BaseException) -> str:
    """The innermost useful cause of a connection failure, in a few words."""
    seen = set()
    cur: BaseException | None = exc
    text = str(exc)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, PermissionError):
            return "permission denied (run as root or join the 'docker' group)"
        if isinstance(cur, FileNotFoundError):
            return "no such socket (is dockerd running?)"
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused (is dockerd running?)"
        cur = cur.__cause__ or cur.__context__ or (cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None)
    low = text.lower()
    if "permission denied" in low:
        return "permission denied (run as root or join the 'docker' group)"
    if "no such file" in low:
        return "no such socket (is dockerd running?)"
    if "connection refused" in low:
        return "connection refused (is dockerd running?)"
    if "timed out" in low or "timeout" in low:
        return "timed out"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def connect(workers: int = 10, timeout: int = 60) -> APIClient:
    """An ``APIClient`` talking to the daemon, its API version agreed (one round trip)."""
    import docker
    from docker.utils import kwargs_from_env

    try:
        kwargs: dict[str, Any] = dict(kwargs_from_env())
    except Exception as e:  # a bad DOCKER_CERT_PATH and the like
        raise TessonError(f"cannot use the Docker settings in the environment: {e}") from None
    kwargs.setdefault("base_url", DEFAULT_SOCKET)
    version = "auto"
    if str(kwargs["base_url"]).startswith("ssh://"):
        kwargs["use_ssh_client"] = True
        version = _ssh_api_version(str(kwargs["base_url"]), timeout)
    try:
        client = docker.APIClient(version=version, timeout=timeout, max_pool_size=max(10, workers), **kwargs)
    except Exception as e:
        raise TessonError(f"cannot reach the Docker daemon at {describe_target()}: {_reason(e)}") from None
    return client


def _ssh_api_version(url: str, timeout: int) -> str:
    """The API version of the daemon at ``ssh://[USER@]HOST[:PORT]``, asked through this machine's
    ssh client as docker-py's transport will connect (TessonError quoting ssh's own reason)."""
    import importlib.util
    import shutil
    import subprocess

    fail = f"cannot reach the Docker daemon at {describe_target()}"
    if importlib.util.find_spec("paramiko") is None:
        raise TessonError(f"{fail}: ssh:// needs docker-py's ssh support (pip install 'tesson[ssh]', or paramiko)")
    if shutil.which("ssh") is None:
        raise TessonError(f"{fail}: ssh:// needs this machine's ssh client (Debian: openssh-client)")
    u = urlparse(url)
    argv = ["ssh", *(["-l", u.username] if u.username else []), *(["-p", str(u.port)] if u.port else []),
            "--", u.hostname or "", "docker version --format '{{.Server.APIVersion}}'"]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TessonError(f"{fail}: no answer through ssh within {timeout} s") from None
    answer = r.stdout.strip()
    if r.returncode != 0 or not re.fullmatch(r"\d+\.\d+", answer):
        said = " ".join((r.stderr or r.stdout).split())[:300] or f"ssh exit {r.returncode}"
        raise TessonError(f"{fail}: {said}")
    return answer


def explain(exc: BaseException) -> str:
    """A daemon error as one line: the daemon's own reason when it gave one."""
    import docker.errors

    if isinstance(exc, docker.errors.APIError):
        text = exc.explanation or str(exc)
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        return " ".join(str(text).split())
    import requests.exceptions

    if isinstance(exc, requests.exceptions.RequestException):
        return f"lost the Docker daemon at {describe_target()}: {_reason(exc)}"
    return " ".join(str(exc).split()) or type(exc).__name__


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether exc is a daemon answer with one of these HTTP status codes."""
    import docker.errors

    return isinstance(exc, docker.errors.APIError) and exc.status_code in codes


def unless_gone(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``call(*args, **kwargs)``, or None when the daemon answers 404: the object is gone (or never
    was), which the caller takes as done (a removal) or as "not there" (an inspect)."""
    try:
        return call(*args, **kwargs)
    except Exception as e:
        if is_status(e, 404):
            return None
        raise


def remove_container(client: APIClient, cid: str) -> None:
    """Remove a container and its anonymous volumes, running or not; one already gone is fine."""
    unless_gone(client.remove_container, cid, force=True, v=True)
