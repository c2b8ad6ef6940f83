"""Where the topology comes from: this machine, a folder (``--fsroot``), or a probe container on the
Docker daemon's host when that host is another machine.

The rule (:func:`source`), first match wins:

1. ``--fsroot DIR`` (or ``TESSON_FSROOT``): that folder, no daemon asked.
2. ``--probe`` (or ``TESSON_PROBE=1``): a probe on the daemon's host, even if it looks local.
3. No ``DOCKER_HOST``, this machine has ``/sys``, and the command would not talk to the daemon
   anyway (``run --dry-run``, ``topology``): this machine, no daemon asked (the default socket is
   this machine's; ``run`` itself checks, see 4).
4. Otherwise the daemon is asked (``docker info``) and its host compared with this machine: same
   name (hostname), kernel release, number of online CPUs and memory size -> this machine (read
   ``/``); any difference -> a probe. The URL's scheme decides nothing: a unix socket can lead
   into a VM (Docker Desktop, Colima), a tcp:// address can be this very machine. A false "remote"
   only costs a probe; a false "local" needs two machines alike in all four, names included.

The probe (:func:`probe`) is one short-lived container of the tesson image (``--probe-image``
otherwise) with the host's ``/sys`` mounted read-only and nothing else (no network, every
capability dropped, no new privileges): ``python3 -m tesson.probe_collect`` there reads the
topology with tesson's own reader and ships back exactly the files it read (a tar, fetched with
the archive API once the container has exited). Unpacked into a folder, it is read by the same
``topology.read()``, so the plan is the one a local read on that host gives. The container is
removed whatever happens (Ctrl-C included).

The cache. Each probe's answer is kept, per daemon, in ``$TESSON_CACHE_DIR`` (default
``$XDG_CACHE_HOME/tesson``, i.e. ``~/.cache/tesson``) under ``probe/DAEMON-ID/`` (``root/`` is the
unpacked answer, ``key.json`` what it is valid for). Clear it with
``rm -rf ~/.cache/tesson/probe`` (or one daemon's folder). An answer is used again while all of
these still hold (one ``docker info`` and one network inspect, a few milliseconds):

- the daemon's ID, host name, kernel release, CPU count (``NCPU``) and memory are unchanged (the
  CPUs changed: probe again);
- the daemon's default ``bridge`` network has the same ID. dockerd makes that network anew every
  time it starts, so every reboot changes it (the boot ID cannot be read without a container:
  ``docker info`` has no boot ID or uptime). A daemon restart without a reboot re-probes too:
  harmless. A daemon without a default bridge (``"bridge": "none"``) is probed every time;
- this tesson's version is the one that made the entry (a newer reader may need other files).

The probe's own boot ID is kept in ``key.json`` beside it, for the record.
"""

from __future__ import annotations

import os

from tesson import __version__, log
from tesson.errors import TessonError

PROBE_ENV = "TESSON_PROBE"
CACHE_ENV = "TESSON_CACHE_DIR"
TIMEOUT = 120  # seconds the probe may take (an image's first start on a slow disk)


class Source:
    """Where a topology is read: ``fsroot`` (a folder holding sys/ and proc/), and for the user
    ``where`` (one line) and ``kind``: ``fsroot``, ``local`` or ``probe``.

    A plain class, not a dataclass: every command asks for its source, and ``dataclasses`` (with the
    ``inspect`` it imports) would cost ``topology`` and ``run --dry-run`` more than reading the CPUs.
    The same goes for the module's other imports (json, tarfile, tempfile, uuid...): only the probe
    and its cache need them, so they are imported there.
    """

    __slots__ = ("fsroot", "kind", "where", "cached")

    def __init__(self, fsroot: str, kind: str, where: str, cached: bool = False):
        self.fsroot, self.kind, self.where, self.cached = fsroot, kind, where, cached

    def __repr__(self) -> str:
        return f"Source(fsroot={self.fsroot!r}, kind={self.kind!r}, where={self.where!r}, cached={self.cached!r})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "where": self.where, "fsroot": self.fsroot, "cached": self.cached}


class ProbeError(TessonError):
    """A probe that could not run: one line naming the daemon, the reason and the fix (exit 1)."""


# --- is the daemon's host this machine? -------------------------------------------------------------


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def this_machine() -> dict:
    """This machine's facts, as ``docker info`` names them."""
    import socket

    return {"Name": socket.gethostname(), "KernelVersion": os.uname().release, "NCPU": os.cpu_count(),
            "MemTotal": _meminfo_total()}


FACTS = (("Name", "name"), ("KernelVersion", "kernel"), ("NCPU", "CPUs"), ("MemTotal", "memory"))


def compare(info: dict, here: dict) -> list[str]:
    """The facts that differ between the daemon's host (``docker info``) and this machine, as
    ``what: daemon's vs this machine's``; [] means the same machine."""
    out = []
    for key, what in FACTS:
        theirs, ours = info.get(key), here.get(key)
        if theirs is None or ours is None or theirs != ours:
            out.append(f"{what} {theirs!r} vs {ours!r}")
    return out


def daemon_text() -> str:
    from tesson import docker_client

    return docker_client.target()


# --- the cache --------------------------------------------------------------------------------------


def cache_dir() -> str:
    """Where probe answers are kept: ``$TESSON_CACHE_DIR/probe`` (default ``~/.cache/tesson/probe``)."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tesson")
    return os.path.join(base, "probe")


def cache_key(info: dict, bridge_id: str | None) -> dict | None:
    """What a cached answer is valid for (see the module's docstring); None: do not cache."""
    if not info.get("ID") or not bridge_id:
        return None
    return {"daemon": info["ID"], "name": info.get("Name"), "kernel": info.get("KernelVersion"),
            "ncpu": info.get("NCPU"), "memory": info.get("MemTotal"), "daemon_start": bridge_id,
            "tesson": __version__}


def entry_valid(stored: dict, key: dict | None) -> bool:
    """Whether a stored entry's key still holds: every field of ``key`` equal (boot_id and the
    other notes beside it do not count)."""
    return key is not None and all(stored.get(k) == v for k, v in key.items())


def _entry_dir(daemon_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in daemon_id)
    return os.path.join(cache_dir(), safe)


def _bridge_id(client) -> str | None:
    from tesson.docker_client import unless_gone

    try:
        net = unless_gone(client.inspect_network, "bridge")
    except Exception:
        return None
    return (net or {}).get("Id")


def lookup(key: dict | None) -> tuple[str, dict] | None:
    """The cached root for this key, with its stored key, or None."""
    if key is None:
        return None
    import json

    folder = _entry_dir(key["daemon"])
    try:
        with open(os.path.join(folder, "key.json")) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    root = os.path.join(folder, "root")
    if not entry_valid(stored, key) or not os.path.isdir(os.path.join(root, "sys")):
        log.info("probe cache stale", folder=folder)
        return None
    return root, stored


def store(key: dict | None, answer: bytes, meta: dict) -> str:
    """Unpack an answer into the cache (or a temporary folder when there is no key or the cache
    cannot be written); returns the root to read."""
    import json
    import shutil
    import tempfile
    import time

    if key is not None:
        folder = _entry_dir(key["daemon"])
        try:
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".new-", dir=os.path.dirname(folder))
            unpack(answer, os.path.join(tmp, "root"))
            with open(os.path.join(tmp, "key.json"), "w") as f:
                json.dump({**key, "boot_id": meta.get("boot_id"), "probe_tesson": meta.get("version"),
                           "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=1)
            old = None
            if os.path.exists(folder):
                old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(folder))
                os.replace(folder, os.path.join(old, "x"))
            os.replace(tmp, folder)
            if old:
                shutil.rmtree(old, ignore_errors=True)
            return os.path.join(folder, "root")
        except OSError as e:
            log.warning("probe answer not cached", folder=folder, error=str(e))
    tmp = tempfile.mkdtemp(prefix="tesson-probe-")
    unpack(answer, tmp)
    return tmp


def unpack(answer: bytes, dest: str) -> None:
    """Extract the probe's tar (paths under dest only: tarfile's ``data`` filter)."""
    import io
    import tarfile

    os.makedirs(dest, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(answer)) as tar:
        tar.extractall(dest, filter="data")


# --- the probe container ----------------------------------------------------------------------------


def _fix(image: str, default: str) -> str:
    from tesson import docker_client

    host = docker_client.target()
    load = f"docker save {image} | docker -H {host} load"
    return f"load it there ({load}) or give --probe-image IMAGE (an image with tesson that the daemon has)" if image == default \
        else f"load it there ({load}) or give another --probe-image"


def probe(client, image: str) -> tuple[bytes, dict]:
    """Run the probe on the daemon's host: ``(answer tar, its facts)``. ProbeError when it cannot."""
    import io
    import json
    import tarfile
    import uuid

    from tesson import default_image, docker_client
    from tesson import labels as L
    from tesson.probe_collect import ANSWER, HOST_SYS, META

    daemon = docker_client.target()

    def fail(why: str, fix: str) -> ProbeError:
        return ProbeError(f"cannot probe the topology of the daemon's host at {daemon}: {why}; {fix}")

    try:
        client.inspect_image(image)
    except Exception as e:
        if docker_client.is_status(e, 404):
            raise fail(f"it has no image {image}", _fix(image, default_image())) from None
        raise fail(docker_client.explain(e), "check the daemon") from None
    name = f"tesson-probe-{uuid.uuid4().hex[:12]}"
    host_config = client.create_host_config(
        mounts=[{"Type": "bind", "Source": "/sys", "Target": HOST_SYS, "ReadOnly": True}],
        network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
    )
    cid = None
    try:
        try:
            cid = client.create_container(
                image, name=name, entrypoint=["python3", "-m", "tesson.probe_collect"], command=[],
                labels={L.ROLE: L.ROLE_PROBE}, host_config=host_config, network_disabled=True,
            )["Id"]
        except Exception as e:
            why = docker_client.explain(e)
            if "mount" in why.lower() or "bind" in why.lower():
                raise fail(f"the daemon refused to mount its /sys ({why})", "allow bind mounts of /sys, or give --fsroot DIR") from None
            raise fail(why, "check the daemon, or give --fsroot DIR") from None
        try:
            client.start(cid)
        except Exception as e:
            why = docker_client.explain(e)
            if "mount" in why.lower():
                raise fail(f"the daemon refused to mount its /sys ({why})", "allow bind mounts of /sys, or give --fsroot DIR") from None
            raise fail(f"the probe failed in {image} ({why[-300:]})", _fix(image, default_image())) from None
        status = client.wait(cid, timeout=TIMEOUT)
        code = (status or {}).get("StatusCode")
        if code != 0:
            lines = docker_client.unless_gone(client.logs, cid, stdout=True, stderr=True, tail=5) or b""
            text = " ".join(lines.decode(errors="replace").split())[-300:] or f"exit {code}"
            raise fail(f"the probe failed in {image} ({text})", _fix(image, default_image()))
        stream, _ = client.get_archive(cid, ANSWER)
        outer = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(outer)) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            answer = member.read() if member else b""
        with tarfile.open(fileobj=io.BytesIO(answer)) as tar:
            member = tar.extractfile(META)
            meta = json.loads(member.read()) if member else {}
    except ProbeError:
        raise
    except (tarfile.TarError, ValueError, KeyError, IndexError) as e:
        raise fail(f"its answer could not be read ({e})", f"check that {image} holds tesson {__version__}") from None
    except Exception as e:
        raise fail(docker_client.explain(e), "check the daemon, or give --fsroot DIR") from None
    finally:
        if cid is not None:
            try:
                docker_client.remove_container(client, cid)
            except Exception as e:  # said, not hidden: the user removes it
                log.warning("probe container not removed", container=name, error=docker_client.explain(e))
    if meta.get("version") != __version__:
        log.warning("the probe image's tesson differs from this one: plans may differ", probe=meta.get("version"),
                    tesson=__version__, image=image)
    return answer, meta


# --- the decision -----------------------------------------------------------------------------------


def forced(flag: bool) -> bool:
    return bool(flag) or os.environ.get(PROBE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def source(fsroot: str, fsroot_given: bool, force: bool = False, image: str | None = None,
           client=None, ask: bool = False) -> Source:
    """Where to read the topology (the rule in the module's docstring). ``client``: a connected
    APIClient the caller has anyway (else one is made when needed); ``ask``: the caller talks to
    the daemon anyway (``run``), so check its host even without DOCKER_HOST."""
    if fsroot_given:
        return Source(fsroot, "fsroot", f"{fsroot} (--fsroot)")
    force = forced(force)
    if not force and not ask and not os.environ.get("DOCKER_HOST") and os.path.isdir("/sys/devices/system/cpu"):
        return Source("/", "local", "this machine's /sys and /proc")
    from tesson import default_image, docker_client

    if client is None:
        client = docker_client.connect()
    daemon = docker_client.target()
    try:
        info = client.info()
    except Exception as e:
        raise TessonError(f"cannot ask the Docker daemon at {daemon} about its host: {docker_client.explain(e)}") from None
    diff = compare(info, this_machine())
    if not diff and not force:
        return Source("/", "local", f"this machine's /sys and /proc (the daemon at {daemon} runs here)")
    why = "--probe" if force else f"the daemon's host is another machine ({'; '.join(diff)})"
    log.info("topology from a probe", daemon=daemon, why=why)
    key = cache_key(info, _bridge_id(client))
    host = info.get("Name") or "?"
    hit = lookup(key)
    if hit is not None:
        root, stored = hit
        return Source(root, "probe", f"host {host} of the daemon at {daemon}, by a probe container "
                                     f"(cached {stored.get('made', '?')})", cached=True)
    image = image or default_image()
    answer, meta = probe(client, image)
    root = store(key, answer, meta)
    return Source(root, "probe", f"host {host} of the daemon at {daemon}, by a probe container ({image}, just now)")


def for_args(args, client=None, ask: bool = False) -> Source:
    """:func:`source` from the command line's options."""
    return source(args.fsroot, args.fsroot_given, getattr(args, "probe", False), getattr(args, "probe_image", None),
                  client=client, ask=ask)
