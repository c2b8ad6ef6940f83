"""tesson version: tesson's own version, and the Docker daemon's it talks to."""

from __future__ import annotations

import json
import sys


def version(fmt: str, out=None) -> int:
    """Print both versions; the daemon's part fails (exit 1) after tesson's is printed, as
    ``docker version`` does when the daemon does not answer."""
    from tesson import __version__

    out = out or sys.stdout
    # platform.python_version() is the first word of sys.version; importing platform cost this verb 2-4 ms
    doc: dict = {"tesson": {"version": __version__, "python": sys.version.split()[0]}}
    daemon_error = None
    try:
        from tesson import docker_client
        from tesson.docker_client import docker_py_module

        doc["tesson"]["docker_sdk"] = docker_py_module("_version").__version__  # without importing the SDK
        client = docker_client.connect_read(timeout=10)
        v = client.version()
        doc["daemon"] = {
            "version": v.get("Version"),
            "api_version": v.get("ApiVersion"),
            "os": v.get("Os"),
            "arch": v.get("Arch"),
            "kernel": v.get("KernelVersion"),
            "endpoint": docker_client.describe_target(),
        }
    except Exception as e:
        from tesson.docker_client import explain
        from tesson.errors import TessonError

        daemon_error = e.args[0] if isinstance(e, TessonError) else f"cannot reach the Docker daemon: {explain(e)}"
    if fmt == "json":
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    else:
        t = doc["tesson"]
        out.write(f"tesson:        {t['version']}\n Python:       {t['python']}\n")
        if "docker_sdk" in t:
            out.write(f" Docker SDK:   {t['docker_sdk']}\n")
        d = doc.get("daemon")
        if d:
            out.write(f"Docker daemon: {d['version']}\n API version:  {d['api_version']}\n"
                      f" OS/Arch:      {d['os']}/{d['arch']}\n Kernel:       {d['kernel']}\n"
                      f" Endpoint:     {d['endpoint']}\n")
    out.flush()
    if daemon_error:
        from tesson.errors import TessonError

        raise TessonError(daemon_error)
    return 0


def main(args) -> int:
    return version(args.format)
