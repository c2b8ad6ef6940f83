"""``--lb nginx`` (the default): an embedded nginx stream balancer in front of the shards.

``run -p SPEC...`` makes, in this order (each recorded in ``ctx.undo``, so a failed run removes it):

- a user-defined bridge network ``tesson-GROUP`` labelled with the group;
- the shards, on that network, publishing nothing;
- ``GROUP-lb`` (labels ``io.tesson.group``, ``io.tesson.role=lb``): the balancer image's nginx in the
  foreground (entrypoint overridden to ``nginx``), its config (see :mod:`nginx_conf`) copied into the
  created container before it starts, publishing every ``-p`` spec exactly as ``docker run -p``
  would. The run waits until nginx has loaded its config (its pid file exists), so a config nginx
  refuses or a host port that is taken fails the run, with nginx's or the daemon's reason.

Shards are upstream servers by their IP address on the group network (see :mod:`nginx_conf`), so
nginx starts and reloads without DNS, also while a shard is down. The addresses written are saved
beside the config (``upstreams.json``): ``ps`` says the balancer is stale when a running shard's
address is not among them (or that the check itself failed, ports still shown), and ``repair``
then reloads nginx: the new files are written beside the old ones, checked with ``nginx -t`` inside
the container and moved into place only if nginx accepts them, then SIGHUP. A refused config
leaves the previous one live and on disk (so the balancer still starts after a restart) and repair
fails with nginx's message. A missing or dead balancer is recreated.

A group run without ``-p`` has nothing to balance: no network, no balancer.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time

from tesson import cpulist, log
from tesson.errors import TessonError, UsageError
from tesson.docker_client import explain as _explain
from tesson.docker_client import is_status as _is_status
from tesson.docker_client import remove_container as _remove_container
from tesson.frontend import GROUP, ROLE, Context, Frontend, Undo
from tesson.group import FRONTEND as FRONTEND_LABEL
from tesson.group import PORTS, SHARD
from tesson.group import RUN as RUN_LABEL
from tesson.frontend import nginx_conf as nc

KIND = "nginx"
ROLE_LB = "lb"
ROLE_NETWORK = "network"
DEFAULT_IMAGE = "tesson:latest"
NETWORK_PREFIX = "tesson-"

# Labels (on every container of the group) that let stop/ps/repair rebuild the balancer.
LB_METHOD = "io.tesson.lb.method"  # "" = per-protocol default
LB_IMAGE = "io.tesson.lb.image"
LB_CPUS = "io.tesson.lb.cpus"  # "" = unpinned

READY_TIMEOUT = 15.0  # seconds for nginx to load its config in a fresh container
# Beside the config in the balancer: {shard name: address} as written into the config, so ps can
# tell a stale balancer and repair whether a reload is needed.
ADDRESSES_PATH = "/etc/tesson/upstreams.json"


def network_name(group: str) -> str:
    return NETWORK_PREFIX + group


def lb_name(group: str) -> str:
    return f"{group}-lb"


def _tar(files: dict) -> bytes:
    """A tar archive of ``{absolute path: bytes}`` (with parent folders) for ``put_archive`` at /."""
    buf = io.BytesIO()
    now = time.time()
    dirs: set = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            f = tarfile.TarInfo("/".join(parts))
            f.size, f.mode, f.mtime = len(data), 0o644, now
            tar.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def _read_file(client, cid: str, path: str) -> bytes | None:
    """One file out of a container (None if it is not there)."""
    try:
        stream, _stat = client.get_archive(cid, path)
    except Exception as e:
        if _is_status(e, 404):
            return None
        raise
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        f = tar.extractfile(member) if member is not None else None
        return f.read() if f is not None else None


def _host_port_error(text: str) -> str | None:
    """``host port ADDR:PORT is already in use (REASON)`` when a daemon error says so, else None."""
    low = text.lower()
    if "already allocated" not in low and "address already in use" not in low:
        return None
    m = re.search(r"(?:Bind for |listen (?:tcp|udp)[46]? )(\S+?:\d+)", text)
    where = m.group(1) if m else "(one of -p)"
    return f"host port {where} is already in use ({text.rsplit(': ', 1)[-1].strip()})"


def _check_host_ports(ports) -> None:
    """Fail before anything is made when a fixed host port of ``-p`` is already taken here.

    Only meaningful when the daemon runs on this machine and tesson shares the host's network (as
    the CLI plugin does); a port this process cannot judge (another address, another namespace) is
    left to the daemon, whose refusal at the balancer's start rolls the run back just the same.
    """
    import errno
    import socket

    for p in ports:
        if not p.host_port or "-" in p.host_port:
            continue
        ip = p.host_ip or "0.0.0.0"
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
        try:
            s = socket.socket(family, kind)
        except OSError:
            continue
        try:
            if kind == socket.SOCK_STREAM:  # as the daemon's proxy does; TIME_WAIT does not count
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, int(p.host_port)))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise TessonError(
                    f"host port {ip}:{p.host_port}/{p.proto} (from -p {p.spec}) is already in use on this machine"
                ) from None
        finally:
            s.close()


class NginxFrontend(Frontend):
    kind = KIND

    def __init__(self, ports=(), method=None, image=DEFAULT_IMAGE, cpus=()):
        self.ports = list(ports)  # tesson.ports.Port
        self.method = method  # a key of nginx_conf.METHODS, or None
        self.image = image
        self.cpus = list(cpus)
        self._network = None  # the network's id once made or found by this process

    # -- building -----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """A balancer only makes sense with ports to balance."""
        return bool(self.ports)

    @classmethod
    def from_args(cls, args) -> "NginxFrontend":
        from tesson import ports as _ports

        ports = _ports.parse(getattr(args, "ports", None) or [])
        for p in ports:
            if p.proto not in nc.PROTOCOLS:
                raise UsageError(
                    f"port spec {p.spec!r}: the nginx balancer does tcp and udp, not {p.proto} (use --lb none)"
                )
        method = nc.normalize_method(getattr(args, "lb_method", None))
        image = getattr(args, "lb_image", None) or os.environ.get("TESSON_IMAGE") or DEFAULT_IMAGE
        cpus = _check_cpus(getattr(args, "lb_cpus", None), getattr(args, "fsroot", "/") or "/")
        if not ports and getattr(args, "lb", None) == KIND:
            raise UsageError("--lb nginx needs at least one -p (the ports the balancer publishes)")
        if not ports and (method or getattr(args, "lb_cpus", None) or getattr(args, "lb_image", None)):
            log.warning("no -p given: the group has no balancer, --lb-* options are ignored")
        return cls(ports, method, image, cpus)

    @classmethod
    def from_labels(cls, labels: dict) -> "NginxFrontend":
        import json

        from tesson import ports as _ports

        try:
            specs = json.loads(labels.get(PORTS) or "[]")
            ports = [p for p in _ports.parse(specs) if p.proto in nc.PROTOCOLS]
        except (ValueError, TypeError, UsageError):
            ports = []
        method = labels.get(LB_METHOD) or None
        if method not in nc.METHODS:
            method = None
        cpus = []
        try:
            cpus = cpulist.parse(labels.get(LB_CPUS) or "")
        except ValueError:
            pass
        return cls(ports, method, labels.get(LB_IMAGE) or DEFAULT_IMAGE, cpus)

    def labels(self) -> dict:
        return {LB_METHOD: self.method or "", LB_IMAGE: self.image, LB_CPUS: cpulist.format(self.cpus)}

    # -- run ------------------------------------------------------------------------------------

    def shape_shard(self, ctx: Context, shard, body: dict) -> None:
        if not self.enabled:
            return
        net = network_name(ctx.group)
        host = body.get("HostConfig") or {}
        host["NetworkMode"] = self._network or net
        body["HostConfig"] = host

    def before_shards(self, ctx: Context) -> None:
        if not self.enabled:
            return
        mode = ((ctx.config or {}).get("HostConfig") or {}).get("NetworkMode")
        if mode and mode != network_name(ctx.group):
            raise UsageError(
                f"the config sets HostConfig.NetworkMode={mode!r}, but behind the nginx balancer the shards "
                f"join the group's network {network_name(ctx.group)}: drop it, or use --lb none"
            )
        self._check_image(ctx)
        from tesson.docker_client import is_remote

        if not is_remote():
            _check_host_ports(self.ports)
        self._network = self._make_network(ctx, record=True)

    def after_shards(self, ctx: Context) -> None:
        if not self.enabled:
            return
        addresses = self._shard_addresses(ctx)
        down = [n for n in ctx.shard_names() if not addresses.get(n)]
        if down:
            raise TessonError(
                f"shard{'s' if len(down) > 1 else ''} {', '.join(down)} not running after start "
                f"(see docker logs {down[0]}): no balancer made"
            )
        self._create_lb(ctx, addresses, record=True)

    # -- stop -------------------------------------------------------------------------------------

    def before_stop(self, ctx: Context) -> None:
        """Close the front door first, so no new connection goes to a shard that is stopping."""
        for c in self._lb_containers(ctx):
            if c.get("State") != "running":
                continue
            try:
                ctx.docker.stop(c["Id"], timeout=min(ctx.timeout, 10))
            except Exception as e:  # the runtime stops it again with the rest
                log.warning("could not stop the balancer first", error=_explain(e))

    def after_stop(self, ctx: Context) -> None:
        """With --purge, the group's network goes too (the only place that removes it). When it
        cannot (a container outside the group still attached, say), the group's containers are
        gone already and no tesson command finds the group any more: so the error says what holds
        the network and the docker commands that finish the job."""
        if not ctx.purge:
            return
        client = ctx.docker
        for net in self._networks(ctx):
            name = net.get("Name") or network_name(ctx.group)
            try:
                client.remove_network(net["Id"])
                log.info("network removed", network=name)
                continue
            except Exception as e:
                if _is_status(e, 404):
                    continue
                why = _explain(e)
            try:
                attached = (client.inspect_network(net["Id"]).get("Containers") or {}).values()
                holders = sorted(c.get("Name") or "?" for c in attached)
            except Exception:
                holders = []
            try:
                left = client.containers(all=True, filters={"label": [f"{GROUP}={ctx.group}"]})
            except Exception:
                left = []
            gone = (
                "the group's containers are removed"
                if not left
                else f"{len(left)} of the group's containers are left ({', '.join(sorted((c.get('Names') or ['?'])[0].lstrip('/') for c in left))})"
            )
            if holders:
                raise TessonError(
                    f"group {ctx.group}: {gone}, but network {name} is still used by {', '.join(holders)}: "
                    f"'docker network disconnect {name} {holders[0]}'{' (and each other one)' if len(holders) > 1 else ''}, "
                    f"then 'docker network rm {name}'"
                )
            raise TessonError(f"group {ctx.group}: {gone}, but network {name} was not removed ({why}): "
                              f"'docker network rm {name}'")

    # -- repair ------------------------------------------------------------------------------------

    def repair(self, ctx: Context, recreated: list[int]) -> list[str]:
        if not self.enabled:
            return []
        client = ctx.docker
        lines: list[str] = []
        if not self._networks(ctx):
            self._network = self._make_network(ctx, record=False)
            lines.append(f"recreated network {network_name(ctx.group)}")
        addresses = self._shard_addresses(ctx)
        running = list(addresses)
        name = lb_name(ctx.group)
        if not running:
            lines.append(f"balancer {name}: no shard is running, nothing to balance")
            return lines
        lb = self._inspect(client, name)
        state = (lb or {}).get("State") or {}
        if lb is None or not state.get("Running") or state.get("Restarting"):
            was = "missing" if lb is None else (state.get("Status") or "not running")
            self._check_image(ctx)
            if lb is not None:
                try:
                    _remove_container(client, lb["Id"])
                except Exception as e:
                    raise TessonError(f"balancer {name} ({was}) could not be removed: {_explain(e)}") from None
            self._create_lb(ctx, addresses, record=False)
            lines.append(f"recreated balancer {name} (it was {was}): {len(running)} shards")
            return lines
        try:
            loaded = self._loaded(client, lb["Id"])
        except Exception as e:
            log.warning("balancer addresses unreadable", error=_explain(e))
            loaded = None
        if recreated or loaded != addresses:
            try:
                self._reload(ctx, lb["Id"], addresses)
            except TessonError:
                raise
            except Exception as e:
                raise TessonError(f"balancer {name} could not be reloaded: {_explain(e)}") from None
            lines.append(f"reloaded balancer {name}: {len(running)} shards at their current addresses")
        return lines

    # -- ps ----------------------------------------------------------------------------------------

    def describe(self, ctx: Context) -> dict:
        name = lb_name(ctx.group)
        if not self.enabled:
            return {"kind": KIND, "container": None, "status": "no balancer (no -p)", "ports": []}
        lbs = self._lb_containers(ctx)
        if not lbs:
            return {"kind": KIND, "container": name, "status": "missing", "ports": self._wanted_ports(), "image": self.image}
        c = lbs[0]
        published = []
        for p in c.get("Ports") or []:
            if p.get("PublicPort"):
                ip = p.get("IP") or "0.0.0.0"
                host = f"[{ip}]" if ":" in ip else ip
                proto = p.get("Type", "tcp")
                published.append((proto, p["PrivatePort"], ":" in ip, ip, p["PublicPort"],
                                  f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{proto}"))
        ports = [t for *_, t in sorted(set(published))] or self._wanted_ports()
        status = c.get("State", "unknown")
        stale: list[str] | None = []
        if status == "running":
            try:
                stale = self._stale(ctx, c["Id"])
            except Exception as e:  # the balancer's state is still worth showing: its ports
                stale = None
                status = f"running, stale check failed: {_explain(e)}"
            if stale:
                status = f"running, stale: run tesson repair to reach {', '.join(stale)}"
        return {
            "kind": KIND,
            "container": ((c.get("Names") or ["/" + name])[0]).lstrip("/"),
            "id": c.get("Id", "")[:12],
            "status": status,
            "stale": stale,
            "detail": c.get("Status", ""),
            "ports": ports,
            "image": c.get("Image") or self.image,
            "method": self.method or "least_conn (tcp), round_robin (udp)",
        }

    # -- helpers -----------------------------------------------------------------------------------

    def _wanted_ports(self) -> list[str]:
        out = []
        for p in self.ports:
            host = p.host_ip or "0.0.0.0"
            host = f"[{host}]" if ":" in host else host
            out.append(f"{host}:{p.host_port or '*'}->{p.port}/{p.proto}")
        return out

    def _check_image(self, ctx: Context) -> None:
        try:
            ctx.docker.inspect_image(self.image)
        except Exception as e:
            if _is_status(e, 404):
                raise TessonError(
                    f"balancer image {self.image!r} not found on the daemon: build it ('make image'), "
                    "or name an image with nginx and its stream module with --lb-image or TESSON_IMAGE"
                ) from None
            raise TessonError(f"balancer image {self.image!r}: {_explain(e)}") from None

    def _networks(self, ctx: Context) -> list[dict]:
        name = network_name(ctx.group)
        nets = ctx.docker.networks(names=[name], filters={"label": [f"{GROUP}={ctx.group}"]})
        return [n for n in nets if n.get("Name") == name]

    def _make_network(self, ctx: Context, record: bool) -> str:
        """Create ``tesson-GROUP``; reuse one left by an earlier run of this group (not recorded for
        undo: this run did not make it). A network of that name that is not tesson's is an error."""
        client, name = ctx.docker, network_name(ctx.group)
        labels = {GROUP: ctx.group, ROLE: ROLE_NETWORK, FRONTEND_LABEL: KIND}
        try:
            net_id = client.create_network(name, driver="bridge", labels=labels, check_duplicate=True)["Id"]
        except Exception as e:
            if not _is_status(e, 409):
                raise TessonError(f"could not create network {name}: {_explain(e)}") from None
            try:
                existing = client.inspect_network(name)
            except Exception as e2:
                raise TessonError(f"network {name} exists but cannot be inspected: {_explain(e2)}") from None
            if (existing.get("Labels") or {}).get(GROUP) != ctx.group:
                raise TessonError(
                    f"a network named {name} exists and is not tesson's for group {ctx.group}: "
                    "remove it or pick another group name"
                ) from None
            log.info("network reused", network=name, id=existing["Id"][:12])
            return existing["Id"]
        log.info("network created", network=name, id=net_id[:12])
        if record:
            run_id = ctx.labels.get(RUN_LABEL)
            ctx.undo.add(f"network {name}", lambda: _undo_network(client, ctx.group, name, net_id, run_id))
        return net_id

    def _stale(self, ctx: Context, cid: str) -> list[str]:
        """The running shards whose current address is not among those the balancer's config lists
        (recreated or restarted onto another address since it was written): nginx does not reach
        them until a reload (``tesson repair``)."""
        loaded = self._loaded(ctx.docker, cid)
        if loaded is None:
            return []
        have = set(loaded.values())
        return [n for n, ip in self._shard_addresses(ctx).items() if ip not in have]

    def _loaded(self, client, cid: str) -> dict | None:
        """``{shard name: address}`` as written into the balancer's config (None: unreadable)."""
        import json

        try:
            loaded = json.loads(_read_file(client, cid, ADDRESSES_PATH) or b"null")
        except (ValueError, tarfile.TarError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _render(self, ctx: Context, addresses: dict) -> str:
        return nc.render(ctx.group, addresses, self.ports, self.method, workers=len(self.cpus) or None)

    def _files(self, ctx: Context, addresses: dict, suffix: str = "") -> bytes:
        """The config and the addresses it lists, as a tar for ``put_archive`` at / (each path +
        ``suffix``: a reload stages them beside the live ones)."""
        import json

        conf = self._render(ctx, addresses)
        return _tar({nc.CONFIG_PATH + suffix: conf.encode(), ADDRESSES_PATH + suffix: json.dumps(addresses).encode()})

    def _create_lb(self, ctx: Context, addresses: dict, record: bool) -> str:
        """Create, fill and start ``GROUP-lb`` for the shards ``addresses`` ({name: address})."""
        from tesson import ports as _ports

        client, name, net = ctx.docker, lb_name(ctx.group), network_name(ctx.group)
        files = self._files(ctx, addresses)
        host: dict = {
            "NetworkMode": self._network or net,
            "PortBindings": _ports.port_bindings(self.ports),
            "RestartPolicy": {"Name": "unless-stopped"},
        }
        if self.cpus:
            host["CpusetCpus"] = cpulist.format(self.cpus)
        body = {
            "Image": self.image,
            # a copy of the config with its own address marked down, then nginx (see nginx_conf)
            "Entrypoint": nc.start_command(),
            "Labels": {**ctx.labels, **self.labels(), ROLE: ROLE_LB, GROUP: ctx.group},
            "ExposedPorts": _ports.exposed_ports(self.ports),
            "HostConfig": host,
        }
        try:
            cid = client.create_container_from_config(body, name=name)["Id"]
        except Exception as e:
            if _is_status(e, 409):
                raise TessonError(f"a container named {name} exists already: remove it first") from None
            raise TessonError(f"balancer {name} could not be created: {_explain(e)}") from None
        if record:
            ctx.undo.add(f"balancer {name}", lambda: _remove_container(client, cid))
        try:
            try:
                client.put_archive(cid, "/", files)
                client.start(cid)
            except Exception as e:
                taken = _host_port_error(_explain(e))
                if taken:
                    raise TessonError(f"balancer {name}: {taken}") from None
                raise TessonError(f"balancer {name} could not start: {_explain(e)}") from None
            self._wait_ready(client, cid, name)
        except BaseException:
            if not record:  # repair: do not leave a broken balancer behind
                _remove_container(client, cid)
            raise
        log.info("balancer started", container=name, id=cid[:12], shards=len(addresses), image=self.image)
        return cid

    def _wait_ready(self, client, cid: str, name: str) -> None:
        """Until nginx wrote its pid file: it has parsed the config and opened every listening
        socket. Fail with nginx's own words if it exits instead."""
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.02
        while True:
            info = client.inspect_container(cid)
            state = info.get("State") or {}
            if not state.get("Running") or state.get("Restarting") or info.get("RestartCount"):
                raise TessonError(f"balancer {name} exited: {_last_words(client, cid)}")
            try:
                stream, _stat = client.get_archive(cid, nc.PID_FILE)
                for _ in stream:
                    pass
                return
            except Exception as e:
                if not _is_status(e, 404):
                    raise
            if time.monotonic() > deadline:
                raise TessonError(f"balancer {name} did not come up in {READY_TIMEOUT:.0f}s: {_last_words(client, cid)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _reload(self, ctx: Context, cid: str, addresses: dict) -> None:
        """New config into the running balancer, then SIGHUP (graceful: nginx re-reads the live config).

        The files are staged beside the current ones and installed only if the balancer's nginx
        accepts them (:func:`nginx_conf.reload_script`): when it refuses them, the previous config
        stays live and on disk (the next start of the container still works), and this raises
        TessonError with nginx's message."""
        client, name = ctx.docker, lb_name(ctx.group)
        client.put_archive(cid, "/", self._files(ctx, addresses, suffix=nc.STAGED))
        exec_id = client.exec_create(cid, nc.reload_command(also=[ADDRESSES_PATH]))["Id"]
        out = client.exec_start(exec_id)
        code = client.exec_inspect(exec_id).get("ExitCode")
        if code != 0:
            text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
            raise TessonError(f"balancer {name}: nginx refused the new config, the previous one stays: {' '.join(text.split())[:300]}")
        client.kill(cid, signal="SIGHUP")
        log.info("balancer reloaded", container=name, shards=len(addresses))

    def _inspect(self, client, name: str):
        try:
            return client.inspect_container(name)
        except Exception as e:
            if _is_status(e, 404):
                return None
            raise

    def _lb_containers(self, ctx: Context) -> list[dict]:
        state = ctx.state
        if state is not None and getattr(state, "others", None) is not None:
            return [c for c in state.others if (c.get("Labels") or {}).get(ROLE) == ROLE_LB]
        return ctx.docker.containers(
            all=True, filters={"label": [f"{GROUP}={ctx.group}", f"{ROLE}={ROLE_LB}"]}
        )

    def _shard_addresses(self, ctx: Context) -> dict:
        """``{name: address on the group network}`` of the group's running shards that have one, by
        index: the servers the balancer can reach now."""
        net = network_name(ctx.group)
        found = ctx.docker.containers(filters={"label": [f"{GROUP}={ctx.group}", f"{ROLE}=shard"], "status": "running"})
        out = []
        for c in found:
            try:
                index = int((c.get("Labels") or {}).get(SHARD, ""))
            except ValueError:
                continue
            name = ctx.shard_name(index)
            if (c.get("Names") or [""])[0].lstrip("/") != name:
                continue
            nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
            out.append((index, name, (nets.get(net) or {}).get("IPAddress", "")))
        return {name: ip for _, name, ip in sorted(out) if ip}


def _check_cpus(text, fsroot: str) -> list[int]:
    """``--lb-cpus``: a cpulist whose CPUs this machine has (and this process may use)."""
    if not text:
        return []
    try:
        cpus = cpulist.parse(text)
    except ValueError:
        raise UsageError(f"--lb-cpus {text!r} is not a CPU list (like 0-3,8)") from None
    if not cpus:
        raise UsageError(f"--lb-cpus {text!r} names no CPU")
    from tesson import topology

    have = topology.read(fsroot).pus
    missing = [c for c in cpus if c not in have]
    if missing:
        raise UsageError(
            f"--lb-cpus {text!r}: CPU {cpulist.format(missing)} is not available on this machine "
            f"(available: {cpulist.format(have)})"
        )
    return cpus


def _last_words(client, cid: str) -> str:
    try:
        text = client.logs(cid, stdout=True, stderr=True, tail=5)
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    except Exception as e:
        return f"(no logs: {_explain(e)})"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:400] or "no output"


def _undo_network(client, group: str, name: str, net_id: str, run_id: str | None):
    """A failed run's undo of the network it made, unless another run of the group uses it.

    The network is made before shard 0 claims the group's name, so two concurrent runs of one
    group can both get here: the one that made the network may be the one that loses the name,
    while the winner (which found the network and reuses it) has containers on it that are only
    created, holding no endpoint yet, so Docker would let the network go from under them. Any
    container of the group from another run (another ``io.tesson.run``) keeps the network.
    """
    others = [
        c for c in client.containers(all=True, filters={"label": [f"{GROUP}={group}"]})
        if (c.get("Labels") or {}).get(RUN_LABEL) != run_id
    ]
    if others:
        log.info("network kept: another run of the group uses it", network=name,
                 containers=[(c.get("Names") or ["?"])[0].lstrip("/") for c in others])
        return Undo.KEPT
    try:
        client.remove_network(net_id)
    except Exception as e:
        if not _is_status(e, 404):
            raise


FRONTEND = NginxFrontend
