"""The nginx frontend's balancer container, ``GROUP-lb``: its create body (in the host's network with
the least nginx needs there, or on the group's network publishing the ``-p`` specs), creating,
filling and starting it, reloading it with a staged config, and the check that its image exists.
What goes into its config is :mod:`nginx_conf`'s; the files and waits are :mod:`nginx_io`'s."""

from __future__ import annotations

from typing import Any, Iterable

from tesson import IMAGE_ENV, cpulist
from tesson import ports as P
from tesson.docker_client import create_and_start, explain, is_status
from tesson.errors import TessonError
from tesson.frontend import Context
from tesson.frontend import nginx_conf as nc
from tesson.frontend import nginx_io as nio


def check_image(client: Any, image: str) -> None:
    """TessonError unless the daemon has the balancer's ``image``."""
    try:
        client.inspect_image(image)
    except Exception as e:
        if is_status(e, 404):
            raise TessonError(
                f"balancer image {image!r} not found on the daemon: build it ('make image'), "
                f"or name an image with nginx and its stream module with --lb-image or {IMAGE_ENV}"
            ) from None
        raise TessonError(f"balancer image {image!r}: {explain(e)}") from None


def host_network_config(ports: Iterable[P.Port]) -> dict:
    """``HostConfig`` for a balancer in the host's network, with the least nginx needs there: its
    master runs as root only to open the listeners and start workers, which switch to ``nobody``
    (CAP_SETUID, CAP_SETGID) and hold no capability; CAP_NET_BIND_SERVICE only for a host port below
    1024; every other capability dropped, no-new-privileges."""
    low = any(p.host_port and "-" not in p.host_port and int(p.host_port) < 1024 for p in ports)
    return {
        "NetworkMode": "host",
        "CapDrop": ["ALL"],
        "CapAdd": ["SETUID", "SETGID"] + (["NET_BIND_SERVICE"] if low else []),
        "SecurityOpt": ["no-new-privileges"],
    }


def container_body(image: str, labels: dict, ports: list[P.Port], host: bool, network: str,
                   cpus: list[int]) -> dict[str, Any]:
    """The balancer's create body: in the host's network (``host``), or on ``network`` publishing
    every ``-p`` spec as ``docker run -p`` would; pinned to ``cpus`` when given."""
    hc: dict[str, Any] = {"RestartPolicy": {"Name": "unless-stopped"}}
    if host:
        hc.update(host_network_config(ports))
    else:
        hc.update({"NetworkMode": network, "PortBindings": P.port_bindings(ports)})
    if cpus:
        hc["CpusetCpus"] = cpulist.format(cpus)
    body: dict[str, Any] = {
        "Image": image,
        # a copy of the config with its own address marked down, then nginx (see nginx_conf)
        "Entrypoint": nc.start_command(),
        "Labels": labels,
        "HostConfig": hc,
    }
    if not host:
        body["ExposedPorts"] = P.exposed_ports(ports)
    return body


def create(ctx: Context, name: str, body: dict, files: bytes, host: bool, record: bool) -> str:
    """Create the balancer ``name`` from ``body``, put ``files`` (a tar at /) in, start it and wait
    until nginx has loaded its config; its id. ``record``: removed by ``ctx.undo`` when the run
    fails; else (repair) a balancer that does not start is removed at once. A host port that is
    taken (Docker's publishing, or in the host network nginx's bind()) is named in the error."""
    client = ctx.docker
    from tesson.runtime.body import start_container  # the runtime (~25 ms of imports) is not ps's

    def start(cid: str) -> None:
        try:
            client.put_archive(cid, "/", files)
            start_container(client, cid)
        except Exception as e:
            taken = nio.host_port_error(explain(e))
            if taken:
                raise TessonError(f"balancer {name}: {taken}") from None
            raise TessonError(f"balancer {name} could not start: {explain(e)}") from None
        try:
            nio.wait_ready(client, cid, name, nc.PID_FILE)
        except TessonError as e:  # in the host network a taken port is nginx's bind() failing
            taken = nio.host_port_error(str(e)) if host else None
            if taken:
                raise TessonError(f"balancer {name}: {taken}") from None
            raise

    return create_and_start(client, body, name, f"balancer {name}", start, ctx.undo if record else None)[0]


def reload(client: Any, cid: str, name: str, staged: bytes) -> None:
    """The ``staged`` files (a tar at /, each path + ``nginx_conf.STAGED``) into the running
    balancer, then SIGHUP (graceful: nginx re-reads the live config).

    The files are installed only if the balancer's nginx accepts them
    (:func:`nginx_conf.reload_script`): when it refuses them, the previous config stays live and
    on disk (the next start of the container still works), and this raises TessonError with
    nginx's message."""
    client.put_archive(cid, "/", staged)
    exec_id = client.exec_create(cid, nc.reload_command(also=[nio.ADDRESSES_PATH]))["Id"]
    out = client.exec_start(exec_id)
    code = client.exec_inspect(exec_id).get("ExitCode")
    if code != 0:
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        raise TessonError(f"balancer {name}: nginx refused the new config, the previous one stays: {' '.join(text.split())[:300]}")
    client.kill(cid, signal="SIGHUP")


def displayed(ports: Iterable[tuple[str, int, int, str]]) -> list[str]:
    """``(host ip, host port, container port, proto)`` as ``docker ps`` lists them, in its order."""
    return [t for *_, t in sorted({(proto, port, ":" in ip, ip, public, P.display(ip, public, port, proto))
                                   for ip, public, port, proto in ports})]
