"""``run -c CONFIG.json``: a Docker Engine API container-create body to start every shard from.

It is passed to the daemon as given (``Cmd``, ``Env``, ``Labels``, ``User``, ``HostConfig`` with
``Memory``, ``CpuShares``, ``Binds``, ``RestartPolicy``, ``Ulimits``, ...), with tesson's own
fields merged on top. tesson places the shards itself, so a config that sets ``CpusetCpus``,
``CpusetMems`` or a container name is refused. Errors name the file and, where it can, the line.

A config that gives the shards power over the host (:func:`host_power`) needs ``--allow-privileged``.

The config is never copied into labels (anyone who can list containers reads those, and tools
export them): the group's labels hold its :func:`digest` and the names of its fields
(:func:`fields`), as compose keeps only a hash. ``repair`` recovers the values from a surviving
shard's own inspect (:func:`recover`); with no shard left it cannot, and says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
import re
from typing import Any

from tesson import labels as L
from tesson.errors import UsageError

# Fields tesson owns: where the shard runs and what it is called.
REFUSED = {
    "CpusetCpus": "tesson pins each shard itself (use -u and -n)",
    "CpusetMems": "tesson pins each shard's memory itself (use -u and -n)",
    "Name": "shards are named GROUP-INDEX (use -g)",
    "name": "shards are named GROUP-INDEX (use -g)",
    "ContainerName": "shards are named GROUP-INDEX (use -g)",
}


def _line_of(text: str, key: str) -> int | None:
    m = re.search(r'"' + re.escape(key) + r'"\s*:', text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _where(path: str, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{path} line {line}" if line else path


def check(body: dict, path: str = "config", text: str = "") -> dict:
    """Check a create body's shape and the fields tesson owns; return it unchanged."""
    if not isinstance(body, dict):
        raise UsageError(f"{path}: expected a JSON object (a container-create body), got {type(body).__name__}")
    host = body.get("HostConfig")
    if host is not None and not isinstance(host, dict):
        raise UsageError(f"{_where(path, text, 'HostConfig')}: HostConfig must be an object")
    for scope, fields in (("", body), ("HostConfig.", host or {})):
        for key, why in REFUSED.items():
            if key in fields:
                raise UsageError(f"{_where(path, text, key)}: {scope}{key} is not allowed here: {why}")
    labels = body.get("Labels")
    if labels is not None and (
        not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())
    ):
        raise UsageError(f"{_where(path, text, 'Labels')}: Labels must be an object of strings")
    if labels and any(k.startswith(L.PREFIX) for k in labels):
        raise UsageError(f"{_where(path, text, 'Labels')}: labels io.tesson.* belong to tesson")
    env = body.get("Env")
    if env is not None and (not isinstance(env, list) or not all(isinstance(v, str) for v in env)):
        raise UsageError(f'{_where(path, text, "Env")}: Env must be a list of "NAME=value" strings')
    for key in ("Cmd", "Entrypoint"):
        value = body.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UsageError(f'{_where(path, text, key)}: {key} must be a list of strings, like ["/bin/sh", "-c", "..."]')
    return body


# --- power over the host -------------------------------------------------------------------------

# Host paths whose bind mount gives the host away: its root, system trees, Docker's own state.
HOST_PATHS = ("/", "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/var/lib/docker", "/var/lib/containerd")
# Sockets of the container engine: whoever reaches one runs any container, privileged, on the host.
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
           "/var/run/containerd/containerd.sock")
NAMESPACES = ("PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode", "CgroupnsMode")
UNCONFINED = ("seccomp=unconfined", "apparmor=unconfined", "label=disable", "label=type:spc_t",
              "systempaths=unconfined")


def _path_power(source: Any) -> str | None:
    """Why bind-mounting host path ``source`` gives the host away, or None (a named volume or an
    ordinary directory)."""
    if not isinstance(source, str) or not source.startswith("/"):
        return None
    path = "/" + posixpath.normpath(source).lstrip("/")
    if path in HOST_PATHS:
        return f"the host's {path}"
    if path in SOCKETS or posixpath.basename(path) == "docker.sock":
        return f"{path} (the container engine's socket)"
    for sock in SOCKETS:
        if sock.startswith(path + "/"):
            return f"{path} (holds the container engine's socket {sock})"
    return None


def host_power(body: dict) -> list[str]:
    """What in a create body gives the shards power over the host, one phrase each ([]: nothing):
    Privileged, host namespaces, added capabilities, unconfined security options, devices, unmasked
    /proc paths, and bind mounts of ``/``, system trees or the container engine's socket."""
    host = body.get("HostConfig") or {}
    found: list[str] = []
    if host.get("Privileged"):
        found.append("HostConfig.Privileged (every capability and device, no seccomp or AppArmor)")
    for key in NAMESPACES:
        if str(host.get(key) or "").lower() == "host":
            found.append(f"HostConfig.{key}=host (the host's namespace)")
    for key in ("CapAdd", "Capabilities"):
        if host.get(key):
            found.append(f"HostConfig.{key} {','.join(map(str, host[key]))}")
    for opt in host.get("SecurityOpt") or []:
        norm = str(opt).replace(":", "=", 1).lower()
        if norm in UNCONFINED or norm.startswith("label=type:spc_t"):
            found.append(f"HostConfig.SecurityOpt {opt}")
    for key in ("Devices", "DeviceCgroupRules"):
        if host.get(key):
            found.append(f"HostConfig.{key} (host devices)")
    for key in ("MaskedPaths", "ReadonlyPaths"):
        if key in host and not host[key]:
            found.append(f"HostConfig.{key} emptied (/proc and /sys unmasked)")
    for bind in host.get("Binds") or []:
        why = _path_power(str(bind).split(":", 1)[0])
        if why:
            found.append(f"HostConfig.Binds {why}")
    for mount in host.get("Mounts") or []:
        if not isinstance(mount, dict):
            continue
        source = mount.get("Source")
        if mount.get("Type") == "volume":  # a local volume can be a bind in disguise (o=bind,device=PATH)
            source = (((mount.get("VolumeOptions") or {}).get("DriverConfig") or {}).get("Options") or {}).get("device")
        why = _path_power(source)
        if why:
            found.append(f"HostConfig.Mounts {why}")
    return found


def check_power(body: dict, path: str = "config", allowed: bool = False) -> None:
    """Refuse (exit 2) a body that gives the host away, unless ``allowed`` (``--allow-privileged``)."""
    found = host_power(body)
    if found and not allowed:
        raise UsageError(
            f"{path} gives the shards power over the host: {'; '.join(found)}; "
            "add --allow-privileged if that is meant (README: what a privileged config gives away)"
        )


def check_for_balancer(body: dict, balancer: str) -> None:
    """Behind a balancer the shards publish nothing: a config that publishes them would let clients
    around it. Refused (exit 2); the group's ports are ``-p``."""
    host = body.get("HostConfig") or {}
    for key in ("PortBindings", "PublishAllPorts"):
        if host.get(key):
            raise UsageError(
                f"the config sets HostConfig.{key}, which would publish the shards around {balancer}: "
                "drop it and publish the group's ports with -p"
            )


# --- what the labels keep: a digest and the field names ----------------------------------------

def digest(body: dict) -> str:
    """``sha256:HEX`` of the body's canonical JSON ("" for no config): the label's only trace of it."""
    if not body:
        return ""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def fields(body: dict) -> list[str]:
    """The names (never the values) of the body's fields: ``Env``, ``HostConfig.Memory``, ..."""
    out = [k for k in body if k != "HostConfig"]
    out += [f"HostConfig.{k}" for k in body.get("HostConfig") or {}]
    return sorted(out)


# Environment variables tesson sets on every shard (runtime.body): not the config's.
TESSON_ENV = ("TESSON_GROUP", "TESSON_UID", "TESSON_CPUS", "TESSON_NCPUS")


def _minus(pairs: dict, remove: dict) -> dict:
    return {k: v for k, v in pairs.items() if remove.get(k) != v}


def _candidates(info: dict, names: list[str], image: dict, published: dict) -> list[dict]:
    """Configs that, given to ``run -c``, make a shard like the inspected one; the first is the
    likeliest.

    ``Env``: tesson appends its variables (``TESSON_GROUP`` first, then a default ``GOMAXPROCS``)
    after the config's, and the daemon appends the image's other variables after those, so the
    config's are exactly the ones before the first ``TESSON_*``. ``Labels``: the container's are
    the image's overlaid with the config's and tesson's, so a label equal to the image's may or may
    not have been the config's: two readings, and the digest decides."""
    conf, host = info.get("Config") or {}, info.get("HostConfig") or {}
    env = list(conf.get("Env") or [])
    cut = next((i for i, e in enumerate(env) if e.split("=", 1)[0] in TESSON_ENV), len(env))
    labels = {k: v for k, v in (conf.get("Labels") or {}).items() if not k.startswith(L.PREFIX)}
    body: dict = {}
    for name in names:
        if name.startswith("HostConfig."):
            key = name.split(".", 1)[1]
            if key in host:
                value = copy.deepcopy(host[key])
                if key == "PortBindings":  # tesson's -p bindings were added to the config's
                    value = _without_bindings(value or {}, published)
                body.setdefault("HostConfig", {})[key] = value
        elif name == "Env":
            body["Env"] = env[:cut]
        elif name == "Labels":
            body["Labels"] = _minus(labels, image.get("Labels") or {})
        elif name in conf:
            body[name] = copy.deepcopy(conf[name])
    out = [body]
    if "Labels" in body and body["Labels"] != labels:
        out.append({**body, "Labels": labels})
    return out


def _without_bindings(bindings: dict, published: dict) -> dict:
    """``PortBindings`` less one entry for each of tesson's own ``-p`` bindings."""
    out = {}
    for key, binds in bindings.items():
        left = list(binds or [])
        for ours in published.get(key, []):
            want = ((ours.get("HostIp") or ""), (ours.get("HostPort") or ""))
            for b in left:
                if ((b.get("HostIp") or ""), (b.get("HostPort") or "")) == want:
                    left.remove(b)
                    break
        if left:
            out[key] = left
    return out


def recover(client: Any, grp: Any) -> dict:
    """The config (``run -c``) of a group found on the daemon, recovered from a surviving shard's
    own inspect (its labels keep only :func:`digest` and :func:`fields`). Among the possible
    readings (see :func:`_candidates`) the one whose digest is the label's wins; when none is
    (Docker normalises some values, e.g. fills in ``RestartPolicy.MaximumRetryCount``), the
    likeliest, which makes the same container. TessonError when no shard is left to read."""
    from tesson import log
    from tesson import ports as P
    from tesson.errors import TessonError

    spec = grp.spec
    if spec.config is not None:
        return spec.config
    published = P.port_bindings(P.parse(spec.port_specs)) if spec.port_specs else {}
    survivors = sorted((s for s in list(grp.shards) + list(grp.extra) if s.id), key=lambda s: (not s.up, s.index))
    for s in survivors:
        try:
            info = client.inspect_container(s.id)
        except Exception:
            continue
        if (info.get("Config") or {}).get("Labels", {}).get(L.CONFIG) != spec.config_digest:
            continue
        try:
            image = client.inspect_image(info.get("Image") or spec.image).get("Config") or {}
        except Exception:
            image = {}
        candidates = _candidates(info, spec.config_fields, image, published)
        exact = [c for c in candidates if digest(c) == spec.config_digest]
        log.info("config recovered", group=grp.name, source=s.name, exact=bool(exact))
        return exact[0] if exact else candidates[0]
    raise TessonError(
        f"group {grp.name}: its config (-c) is not kept in labels (only its digest, so secrets stay "
        f"out of them), and no shard is left to recover it from: run the group again with the same -c "
        f"(tesson stop -g {grp.name} --purge, then tesson run -c ...)"
    )


def load(path: str, allow_privileged: bool = False) -> dict:
    """Read and check CONFIG.json (UsageError, exit 2, naming the file and line when it is bad;
    one that gives the host away needs ``allow_privileged``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config {path} is not UTF-8 text") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"config {path} line {e.lineno} column {e.colno}: not valid JSON: {e.msg}") from None
    check(body, path, text)
    check_power(body, path, allow_privileged)
    return body
