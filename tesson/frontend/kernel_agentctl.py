"""The kernel front door's agent as a container: its create body, its start (until it wrote the
table), the verbs exec'd in it, and the one-off containers of the image that drain, purge or probe
when no agent runs. A mixin of :class:`tesson.frontend.kernel.KernelFrontend` (``self.image``: the
agent's image; ``self.doors``: the group's doors).

What the agent does once it runs is :mod:`tesson.commands.kernel_agent` (its state:
:mod:`tesson.frontend.kernel_table`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from tesson import labels as L
from tesson import log
from tesson.docker_client import create_and_start, docker_socket
from tesson.docker_client import explain as _explain
from tesson.docker_client import remove_container as _remove_container
from tesson.engine_lite import DEFAULT_SOCKET
from tesson.errors import TessonError
from tesson.frontend import kernel_rules as K
from tesson.frontend import nginx_io as nio
from tesson.frontend.kernel_table import READY as READY_PATH  # in the agent's container: JSON of what it wrote
from tesson.names import lb_name

if TYPE_CHECKING:
    from tesson.frontend import Context

READY_TIMEOUT = 20.0
SOCKET_IN_AGENT = DEFAULT_SOCKET  # where the agent's client looks when DOCKER_HOST does not say
ONEOFF_LABEL = "io.tesson.kernel-oneoff"  # on the short-lived containers that drain or purge


class AgentControl:
    """The agent's container, for the kernel frontend."""

    image: str
    doors: list[K.Door]

    def labels(self) -> dict:
        raise NotImplementedError

    def _agent_body(self, ctx: Context, command: list[str], labels: dict, restart: bool) -> dict:
        caps = ["NET_ADMIN"] + (["NET_BIND_SERVICE"] if any(d.host_port < 1024 for d in self.doors) else [])
        host: dict[str, Any] = {
            "NetworkMode": "host",
            "CapDrop": ["ALL"],
            "CapAdd": caps,
            "SecurityOpt": ["no-new-privileges"],
            "Binds": [f"{docker_socket()}:{SOCKET_IN_AGENT}"],
        }
        if restart:
            host["RestartPolicy"] = {"Name": "unless-stopped"}
        return {
            "Image": self.image,
            "Entrypoint": ["tesson"],
            "Cmd": ["kernel-agent", *command, "--group", ctx.group],
            "Env": [f"DOCKER_HOST=unix://{SOCKET_IN_AGENT}"],
            "Labels": labels,
            "HostConfig": host,
        }

    def _create_agent(self, ctx: Context, record: bool) -> dict:
        client, name = ctx.docker, lb_name(ctx.group)
        labels = {**ctx.labels, **self.labels(), L.ROLE: L.ROLE_LB, L.GROUP: ctx.group}
        body = self._agent_body(ctx, ["run"], labels, restart=True)

        def start(cid: str) -> dict:
            try:
                client.start(cid)
            except Exception as e:
                raise TessonError(f"kernel agent {name} could not start: {_explain(e)}") from None
            return self._wait_ready(client, cid, name)

        try:
            cid, wrote = create_and_start(client, body, name, f"kernel agent {name}", start,
                                          ctx.undo if record else None)
        except BaseException:
            if not record:  # repair: leave no broken agent's rules behind (create_and_start removed it)
                try:
                    self._oneoff(ctx, "purge")
                except TessonError as e:
                    log.warning("could not remove the kernel rules", error=str(e))
            raise
        log.info("kernel agent started", container=name, id=cid[:12], shards=len(wrote.get("backends", [])))
        return wrote

    def _wait_ready(self, client: Any, cid: str, name: str) -> dict:
        """Until the agent wrote the table (its ready file); its own one line if it exits instead."""
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.02
        while True:
            info = client.inspect_container(cid)
            state = info.get("State") or {}
            if not state.get("Running") or state.get("Restarting") or info.get("RestartCount"):
                raise TessonError(_agent_words(client, cid, name))
            data = nio.read_file(client, cid, READY_PATH)
            if data:
                try:
                    return json.loads(data)
                except ValueError:
                    pass
            if time.monotonic() > deadline:
                raise TessonError(f"kernel agent {name} did not write the rules in {READY_TIMEOUT:.0f}s: "
                                  f"{nio.last_words(client, cid)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _exec(self, ctx: Context, cid: str, verb: str, *extra: str) -> dict:
        """``tesson kernel-agent VERB --group GROUP [EXTRA...]`` inside the running agent: its JSON answer."""
        client = ctx.docker
        try:
            exec_id = client.exec_create(cid, ["tesson", "kernel-agent", verb, "--group", ctx.group, *extra])["Id"]
            out = client.exec_start(exec_id, demux=True)
            code = client.exec_inspect(exec_id).get("ExitCode")
        except Exception as e:
            raise TessonError(f"kernel agent {lb_name(ctx.group)}: {verb} failed: {_explain(e)}") from None
        stdout, stderr = (out or (b"", b""))
        if code != 0:
            text = (stderr or stdout or b"").decode(errors="replace").strip().splitlines()
            last = text[-1].removeprefix("tesson: ") if text else f"kernel-agent {verb} exited {code}"
            if "unrecognized arguments: --out" in last:  # an agent made by a tesson before holds
                last = (f"kernel agent {lb_name(ctx.group)} (image {self.image}) runs a tesson that cannot hold "
                        "shards out of rotation: a group run with a newer --lb-image can be scaled and updated live")
            raise TessonError(last)
        try:
            return json.loads((stdout or b"{}").decode())
        except ValueError:
            return {}

    def _status(self, ctx: Context, cid: str) -> dict:
        return self._exec(ctx, cid, "status")

    def _oneoff(self, ctx: Context, verb: str, labels: dict | None = None) -> dict:
        """``tesson kernel-agent VERB --group GROUP`` in a short-lived container of the image, on the
        daemon's host (where the rules are), when no agent runs: drain or purge. Returns the JSON
        object the verb printed ({} when there was none)."""
        client = ctx.docker
        body = self._agent_body(ctx, [verb], labels or {ONEOFF_LABEL: ctx.group}, restart=False)
        try:
            cid = client.create_container_from_config(body)["Id"]
        except Exception as e:
            if verb != "purge":
                raise TessonError(f"kernel-agent {verb} could not run in image {self.image}: {_explain(e)}") from None
            raise TessonError(
                f"could not {verb} the kernel rules of group {ctx.group} ({_explain(e)}): as root on the daemon's host, "
                f"'nft delete table ip {K.table_name(ctx.group)}' and delete the rules commented "
                f"{K.comment(ctx.group)} in 'nft -a list chain ip filter DOCKER-USER'") from None
        try:
            client.start(cid)
            code = client.wait(cid, timeout=60).get("StatusCode")
            if code != 0:
                raise TessonError(_agent_words(client, cid, f"kernel-agent {verb}"))
            return _printed(client, cid)
        except TessonError:
            raise
        except Exception as e:
            raise TessonError(f"kernel-agent {verb} for group {ctx.group}: {_explain(e)}") from None
        finally:
            try:
                _remove_container(client, cid)
            except Exception:
                pass


def _printed(client: Any, cid: str) -> dict:
    """The JSON object a finished one-off printed on stdout ({} when none)."""
    try:
        text = client.logs(cid, stdout=True, stderr=False).decode(errors="replace").strip()
        doc = json.loads(text.splitlines()[-1]) if text else {}
    except Exception:
        return {}
    return doc if isinstance(doc, dict) else {}


def _agent_words(client: Any, cid: str, name: str) -> str:
    """The agent's own error line (``tesson: ...``), else its last words."""
    try:
        text = client.logs(cid, stdout=False, stderr=True, tail=5).decode(errors="replace")
    except Exception:
        text = ""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("tesson: "):
            return f"{name}: {line[len('tesson: '):]}"
    return f"{name} exited: {nio.last_words(client, cid)}"
