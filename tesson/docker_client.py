"""The Docker daemon the environment names: ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``), else the local socket. Every call goes through docker-py's low-level
``APIClient``, so raw Engine API bodies pass as given and answers are plain dicts; the read-only
verbs take :func:`connect_read`, which on a local unix socket is :mod:`tesson.engine_lite`'s client
(the same calls and answers without docker-py's import cost).

An ``ssh://[USER@]HOST[:PORT]`` daemon is reached as the docker CLI reaches it: through this
machine's ``ssh`` client (``ssh -l USER -p PORT -- HOST docker system dial-stdio``, docker-py's
``use_ssh_client``), so the user's ``~/.ssh/config``, keys, agent and known hosts apply, and the
other host needs the docker CLI. docker-py imports paramiko for either ssh transport, so ssh://
needs the ``ssh`` extra (``pip install 'tesson[ssh]'``). Each connection of the pool is one ssh
process, whose messages go to stderr; so that a daemon it cannot reach is still one line, the API
version is asked first by one ``ssh ... docker version`` whose stderr tesson keeps and quotes.

Failing to connect is one line naming what was tried, exit 1. :func:`explain`, :func:`is_status`
and :func:`unless_gone` take either client's errors.
"""

from __future__ import annotations

import os
import re
import sys

from tesson.engine_lite import DEFAULT_SOCKET
from tesson.errors import TessonError

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from docker import APIClient

    T = TypeVar("T")

DEFAULT_HOST = "unix://" + DEFAULT_SOCKET  # DOCKER_HOST's default
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def target() -> str:
    """What we will try: DOCKER_HOST as given, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def docker_socket() -> str:
    """The daemon's socket on its own machine, as an agent container mounts it (the kernel door's,
    Gorb dr's VIP agent): TESSON_DOCKER_SOCKET, the path of a unix:// DOCKER_HOST, else the
    default socket."""
    from tesson.engine_lite import unix_path

    return os.environ.get("TESSON_DOCKER_SOCKET") or unix_path(os.environ.get("DOCKER_HOST") or "") or DEFAULT_SOCKET


def describe_target() -> str:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"DOCKER_HOST={host}"
    return f"{DEFAULT_SOCKET} (DOCKER_HOST is not set)"


def is_remote(url: str | None = None) -> bool:
    """By the URL alone: True for a tcp/ssh daemon whose host is not a loopback name. A hint only
    (used to skip checks of this machine's free ports); whose topology to read is tesson.probe's
    decision, made from the daemon's facts."""
    from urllib.parse import urlparse

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
    kwargs.setdefault("base_url", DEFAULT_HOST)
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
    from urllib.parse import urlparse

    fail = f"cannot reach the Docker daemon at {describe_target()}"
    if importlib.util.find_spec("paramiko") is None:
        raise TessonError(f"{fail}: ssh:// needs docker-py's ssh support (pip install 'tesson[ssh]', or paramiko)")
    if shutil.which("ssh") is None:
        raise TessonError(f"{fail}: ssh:// needs this machine's ssh client (Debian: openssh-client)")
    u = urlparse(url)
    try:
        port = u.port  # urlparse checks it only when asked: "ssh://host:abc" or ":99999" raise here
    except ValueError:
        raise TessonError(f"{fail}: the port in {url} is not a number from 1 to 65535") from None
    if not u.hostname:
        raise TessonError(f"{fail}: {url} names no host (ssh://[USER@]HOST[:PORT])")
    argv = ["ssh", *(["-l", u.username] if u.username else []), *(["-p", str(port)] if port else []),
            "--", u.hostname, "docker version --format '{{.Server.APIVersion}}'"]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TessonError(f"{fail}: no answer through ssh within {timeout} s") from None
    answer = r.stdout.strip()
    if r.returncode != 0 or not re.fullmatch(r"\d+\.\d+", answer):
        said = " ".join((r.stderr or r.stdout).split())[:300] or f"ssh exit {r.returncode}"
        raise TessonError(f"{fail}: {said}")
    return answer


def connect_read(workers: int = 10, timeout: int = 60) -> Any:
    """A client for the read-only verbs: on a local unix socket (tesson.engine_lite.local_socket)
    the standard library's :class:`tesson.engine_lite.Client`, else :func:`connect`'s. Both take
    the same calls and give the same answers; failing to connect is the same line."""
    from tesson import engine_lite

    path = engine_lite.local_socket()
    if path is None:
        return connect(workers, timeout)
    try:
        return engine_lite.connect(path, timeout)
    except engine_lite.APIError as e:
        raise TessonError(f"cannot reach the Docker daemon at {describe_target()}: {e.explanation or e}") from None
    except OSError as e:
        raise TessonError(f"cannot reach the Docker daemon at {describe_target()}: {_reason(e)}") from None


def _api_errors() -> tuple:
    """The exception classes of a daemon's HTTP error answer, of the clients loaded: an error of
    docker-py's cannot exist unless docker-py was imported (and importing it costs ~100 ms)."""
    found = []
    lite = sys.modules.get("tesson.engine_lite")
    if lite is not None:
        found.append(lite.APIError)
    if "docker" in sys.modules:
        import docker.errors

        found.append(docker.errors.APIError)
    return tuple(found)


def explain(exc: BaseException) -> str:
    """A daemon error as one line: the daemon's own reason when it gave one."""
    if isinstance(exc, _api_errors()):
        text = getattr(exc, "explanation", None) or str(exc)
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        return " ".join(str(text).split())
    if isinstance(exc, _lost_errors()):
        return f"lost the Docker daemon at {describe_target()}: {_reason(exc)}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _lost_errors() -> tuple:
    """The exception classes of a connection to the daemon lost or answered garbage, of the clients loaded."""
    lite = sys.modules.get("tesson.engine_lite")
    lost: tuple = (lite.ConnectionLost,) if lite is not None else ()
    if "requests" in sys.modules:
        import requests.exceptions

        lost += (requests.exceptions.RequestException,)
    return lost


def is_daemon_error(exc: BaseException) -> bool:
    """Whether exc is the daemon's: an HTTP error answer, or a connection lost or cut short (what
    :func:`explain` says in one line, not a bug of tesson's)."""
    return isinstance(exc, _api_errors() + _lost_errors())


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether exc is a daemon answer with one of these HTTP status codes."""
    return isinstance(exc, _api_errors()) and getattr(exc, "status_code", None) in codes


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


def create_named(client: APIClient, body: dict, name: str, what: str) -> str:
    """Create container ``name`` from ``body`` (a front door's own container; ``what`` names it in
    errors, e.g. "balancer web-lb"); its id. A name taken is one line saying so (Docker's 409)."""
    try:
        return client.create_container_from_config(body, name=name)["Id"]
    except Exception as e:
        if is_status(e, 409):
            raise TessonError(f"a container named {name} exists already: remove it first") from None
        raise TessonError(f"{what} could not be created: {explain(e)}") from None


def create_and_start(client: APIClient, body: dict, name: str, what: str, start: Callable[[str], Any],
                     undo: Any = None) -> tuple[str, Any]:
    """A front door's own container (the balancer, an agent): :func:`create_named`, its removal
    recorded in ``undo`` (a tesson.frontend.Undo) when one is given, then ``start(id)`` (start it
    and wait until it is ready); ``(id, what start returned)``. When ``start`` fails and no undo
    records the container (repair), it is removed at once: no broken one is left behind."""
    cid = create_named(client, body, name, what)
    if undo is not None:
        undo.add(what, lambda: remove_container(client, cid))
    try:
        return cid, start(cid)
    except BaseException:
        if undo is None:
            remove_container(client, cid)
        raise


def docker_py_module(name: str) -> Any:
    """docker-py's module ``docker.NAME`` (one that imports nothing of docker-py itself: ``utils.ports``,
    ``_version``), loaded from its file under a private name without importing the package, whose
    ``__init__`` imports the whole client and requests. The module as imported when docker-py is
    already loaded, or when its file cannot be loaded alone (a docker-py laid out otherwise)."""
    full = f"docker.{name}"
    if "docker" in sys.modules:
        import importlib

        return importlib.import_module(full)
    private = f"tesson._docker_py.{name}"
    if private in sys.modules:
        return sys.modules[private]
    try:
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec, spec_from_file_location

        package = PathFinder.find_spec("docker")
        where = list(package.submodule_search_locations or []) if package is not None else []
        spec = spec_from_file_location(private, os.path.join(where[0], *name.split(".")) + ".py")
        module = module_from_spec(spec)  # type: ignore[arg-type]  # None: caught below
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception:  # any surprise: the ordinary import (slower, same module)
        import importlib

        return importlib.import_module(full)
    sys.modules[private] = module
    return module
