"""``run -c CONFIG.json``: a Docker Engine API container-create body to start every shard from.

It is passed to the daemon as given (``Cmd``, ``Env``, ``Labels``, ``User``, ``HostConfig`` with
``Memory``, ``CpuShares``, ``Binds``, ``RestartPolicy``, ``Ulimits``, ...), with tesson's own
fields merged on top. tesson places the shards itself, so a config that sets ``CpusetCpus``,
``CpusetMems`` or a container name is refused. Errors name the file and, where it can, the line.
"""

from __future__ import annotations

import json
import re

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
        if value is not None and not isinstance(value, (str, list)):
            raise UsageError(f"{_where(path, text, key)}: {key} must be a list of strings")
    return body


def load(path: str) -> dict:
    """Read and check CONFIG.json (UsageError, exit 2, naming the file and line when it is bad)."""
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
    return check(body, path, text)
