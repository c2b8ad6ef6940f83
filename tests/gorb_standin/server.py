#!/usr/bin/env python3
"""A stand-in for Gorb's REST API, for tests on machines whose kernel has no IPVS.

It follows ../shared/gorb-api.md (routes, bodies, validation, the status codes and their
``{"error": ...}`` bodies, backend names unique across the whole daemon, DELETE of a service taking
its backends) and keeps its state in memory, as Gorb does by default. It programs nothing.

Routes under ``/_standin/`` are NOT part of Gorb: they exist only so tests can look inside and
inject faults:

- ``GET /_standin/journal``: every Gorb request so far, in order:
  ``[{"seq", "method", "path", "body", "status"}]`` (``body`` parsed as JSON when it is JSON).
- ``DELETE /_standin/journal``: forget the journal.
- ``POST /_standin/reset``: forget everything (services, backends, journal, faults).
- ``POST /_standin/fail-after`` ``{"after": K, "times": N, "mode": "500"|"drop"|"exit"}``: let K
  more Gorb requests through, then spoil the next N (default: all of them): ``500`` answers
  ``{"error": "error while calling into IPVS"}``; ``drop`` closes the connection without an answer;
  ``exit`` ends this process (the container stops), as a Gorb that dies would.
- ``POST /_standin/backend-status`` ``{"service", "backend", "status": 0|1|2, "health": 0..1}``:
  set what a backend's metrics say (the stand-in runs no health checks of its own).

Standard library only; ``python3 server.py [--port 4672] [--host 0.0.0.0]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERR_EXISTS = (409, "specified object already exists")
ERR_NOT_FOUND = (404, "unable to locate specified object")
ERR_IPVS = (500, "error while calling into IPVS")
ERR_ENDPOINT = (400, "endpoint information is missing")

SCHEDULERS = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq"}
FORWARDING = {"nat", "dr", "tunnel", "ipip"}
SERVICE_FLAGS = {"sh-fallback", "sh-port"}
PULSE_TYPES = {"tcp", "http", "none"}
DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
NAME_RE = r"[^/]+"


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def fail(err) -> BadRequest:
    return BadRequest(*err)


def default_address() -> str:
    """The address Gorb would use for a service without "host": that of its own default interface."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the route's source address
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def resolve(host: str) -> str:
    """The address ``host`` names (a literal, or a name through the resolver), else 400."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise BadRequest(400, f"lookup {host}: {getattr(e, 'strerror', None) or e}") from None
    return infos[0][4][0]


def family(address: str) -> int:
    return ipaddress.ip_address(address).version


def as_port(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(400, f"json: cannot unmarshal {json.dumps(value)} into Go struct field .port of type uint16")
    if not 0 <= value <= 65535:
        raise BadRequest(400, f"json: cannot unmarshal number {value} into Go struct field .port of type uint16")
    return value


def as_str(body: dict, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(400, f"json: cannot unmarshal {json.dumps(value)} into Go struct field .{key} of type string")
    return value


def service_options(body, default_host: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(400, "json: cannot unmarshal body into Go value of type core.ServiceOptions")
    port = as_port(body.get("port"))
    if port == 0:
        raise fail(ERR_ENDPOINT)
    host = as_str(body, "host")
    address = resolve(host) if host else default_host
    protocol = (as_str(body, "protocol") or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise BadRequest(400, "specified protocol is unknown")
    method = (as_str(body, "method") or "wrr").lower()
    if method not in SCHEDULERS:
        raise BadRequest(400, "specified method is unknown")
    persistent = body.get("persistent", False)
    if not isinstance(persistent, bool):
        raise BadRequest(400, "json: cannot unmarshal persistent into Go struct field of type bool")
    flags = as_str(body, "flags")
    for flag in filter(None, flags.split("|")):
        if flag not in SERVICE_FLAGS:
            raise BadRequest(400, "specified flag is unknown")
    return {
        "host": address,
        "port": port,
        "protocol": protocol,
        "method": method,
        "persistent": persistent,
        "flags": flags,
    }


def backend_options(body) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(400, "json: cannot unmarshal body into Go value of type core.BackendOptions")
    host = as_str(body, "host")
    port = as_port(body.get("port"))
    if not host or port == 0:
        raise fail(ERR_ENDPOINT)
    address = resolve(host)
    weight = body.get("weight", 0)
    if weight is None:
        weight = 0
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise BadRequest(400, "json: cannot unmarshal weight into Go struct field of type int32")
    if weight <= 0:
        weight = 100
    method = (as_str(body, "method") or "nat").lower()
    if method not in FORWARDING:
        raise BadRequest(400, "specified forwarding method is unknown")
    pulse = body.get("pulse") or {}
    if not isinstance(pulse, dict):
        raise BadRequest(400, "json: cannot unmarshal pulse into Go struct field of type pulse.Options")
    ptype = (pulse.get("type") or "tcp")
    if not isinstance(ptype, str) or ptype.lower() not in PULSE_TYPES:
        raise BadRequest(400, "specified pulse type is unknown")
    interval = pulse.get("interval") or "1m"
    if not isinstance(interval, str) or not DURATION_RE.match(interval):
        raise BadRequest(400, f"time: invalid duration {json.dumps(interval)}")
    args = pulse.get("args") or {}
    if not isinstance(args, dict):
        raise BadRequest(400, "json: cannot unmarshal args into Go struct field of type map")
    return {
        "host": address,
        "port": port,
        "weight": weight,
        "method": method,
        "pulse": {"type": ptype.lower(), "interval": interval, "args": args},
    }


class State:
    """Gorb's in-memory context: services, and backends named uniquely across the daemon."""

    def __init__(self):
        self.lock = threading.Lock()
        self.default_host = default_address()
        self.reset()

    def reset(self):
        self.services: dict[str, dict] = {}  # name -> {"options", "backends": [rs...]}
        self.backends: dict[str, dict] = {}  # rs -> {"service", "options", "status", "health", "since"}
        self.journal: list[dict] = []
        self.seq = 0
        self.fault_after: int | None = None
        self.fault_times: int | None = None
        self.fault_mode = "500"

    # Gorb's operations -------------------------------------------------------------------------
    def create_service(self, vs: str, body) -> tuple[int, object]:
        opts = service_options(body, self.default_host)
        if vs in self.services:
            raise fail(ERR_EXISTS)
        self.services[vs] = {"options": opts, "backends": []}
        return 200, None

    def create_backend(self, vs: str, rs: str, body) -> tuple[int, object]:
        opts = backend_options(body)
        if rs in self.backends:
            raise fail(ERR_EXISTS)
        service = self.services.get(vs)
        if service is None:
            raise fail(ERR_NOT_FOUND)
        if family(opts["host"]) != family(service["options"]["host"]):
            raise BadRequest(400, "incompatible address families")
        self.backends[rs] = {"service": vs, "options": opts, "status": 0, "health": 1.0, "since": time.time()}
        service["backends"].append(rs)
        return 200, None

    def update_backend(self, vs: str, rs: str, body) -> tuple[int, object]:
        if not isinstance(body, dict):
            raise BadRequest(400, "json: cannot unmarshal body into Go value of type core.BackendOptions")
        weight = body.get("weight", 0)
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise BadRequest(400, "json: cannot unmarshal weight into Go struct field of type int32")
        backend = self._backend(vs, rs)
        backend["options"]["weight"] = weight
        return 200, None

    def remove_service(self, vs: str) -> tuple[int, object]:
        service = self.services.pop(vs, None)
        if service is None:
            raise fail(ERR_NOT_FOUND)
        for rs in service["backends"]:
            self.backends.pop(rs, None)
        return 200, None

    def remove_backend(self, vs: str, rs: str) -> tuple[int, object]:
        self._backend(vs, rs)
        del self.backends[rs]
        self.services[vs]["backends"].remove(rs)
        return 200, None

    def list_services(self) -> tuple[int, object]:
        return 200, sorted(self.services)

    def get_service(self, vs: str) -> tuple[int, object]:
        service = self.services.get(vs)
        if service is None:
            raise fail(ERR_NOT_FOUND)
        healths = [self.backends[rs]["health"] for rs in service["backends"]]
        health = sum(healths) / len(healths) if healths else 0.0
        return 200, {"options": service["options"], "health": health, "backends": list(service["backends"])}

    def get_backend(self, vs: str, rs: str) -> tuple[int, object]:
        b = self._backend(vs, rs)
        metrics = {"status": b["status"], "health": b["health"], "uptime": int(time.time() - b["since"])}
        return 200, {"options": b["options"], "metrics": metrics}

    def metrics_text(self) -> str:
        lines = [
            "# HELP gorb_service_health Health of the virtual service (0..1).",
            "# TYPE gorb_service_health gauge",
        ]
        for vs, service in sorted(self.services.items()):
            healths = [self.backends[rs]["health"] for rs in service["backends"]]
            health = sum(healths) / len(healths) if healths else 0.0
            lines.append(f'gorb_service_health{{name="{vs}"}} {health}')
        lines += [
            "# HELP gorb_backend_status Status of the backend (0 up, 1 down, 2 removed).",
            "# TYPE gorb_backend_status gauge",
        ]
        for rs, b in sorted(self.backends.items()):
            lines.append(f'gorb_backend_status{{service="{b["service"]}",name="{rs}"}} {b["status"]}')
        return "\n".join(lines) + "\n"

    def _backend(self, vs: str, rs: str) -> dict:
        backend = self.backends.get(rs)
        if vs not in self.services or backend is None or backend["service"] != vs:
            raise fail(ERR_NOT_FOUND)
        return backend

    # faults (not Gorb's) -------------------------------------------------------------------------
    def take_fault(self) -> str | None:
        """Count one Gorb request; the fault mode when this one is to be spoiled."""
        if self.fault_after is None:
            return None
        if self.fault_after > 0:
            self.fault_after -= 1
            return None
        if self.fault_times is not None:
            if self.fault_times <= 0:
                self.fault_after = None
                return None
            self.fault_times -= 1
        return self.fault_mode


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gorb-standin/1"

    def log_message(self, fmt, *args):  # quiet unless asked
        if os.environ.get("STANDIN_VERBOSE"):
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    # plumbing ------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload=None, text: str | None = None):
        if text is not None:
            data, ctype = text.encode(), "text/plain; version=0.0.4"
        elif payload is None:
            data, ctype = b"", "text/plain; charset=utf-8"
        else:
            data, ctype = (json.dumps(payload, indent=2) + "\n").encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str):
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_standin/"):
            return self._control(method, path, raw)
        with STATE.lock:
            STATE.seq += 1
            entry = {"seq": STATE.seq, "method": method, "path": path, "body": _parsed(raw), "status": None}
            STATE.journal.append(entry)
            mode = STATE.take_fault()
            if mode == "exit":
                entry["status"] = "exit"
                sys.stderr.write(f"standin: exiting on {method} {path} as asked (fail-after)\n")
                sys.stderr.flush()
                os._exit(3)
            if mode == "drop":
                entry["status"] = "drop"
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if mode == "500":
                entry["status"] = ERR_IPVS[0]
                return self._send(ERR_IPVS[0], {"error": ERR_IPVS[1]})
            try:
                status, payload, text = self._route(method, path, raw)
            except BadRequest as e:
                entry["status"] = e.status
                return self._send(e.status, {"error": e.message})
            entry["status"] = status
        self._send(status, payload, text)

    def _route(self, method: str, path: str, raw: bytes):
        parts = [p for p in path.split("/") if p != ""] if path != "/" else []
        if parts == ["metrics"] and method == "GET":
            return 200, None, STATE.metrics_text()
        if not parts or parts[0] != "service" or len(parts) > 3:
            raise BadRequest(404, "404 page not found")
        if len(parts) == 1:
            if method == "GET":
                return (*STATE.list_services(), None)
        elif len(parts) == 2:
            vs = parts[1]
            if method == "PUT":
                return (*STATE.create_service(vs, _json(raw)), None)
            if method == "GET":
                return (*STATE.get_service(vs), None)
            if method == "DELETE":
                return (*STATE.remove_service(vs), None)
        else:
            vs, rs = parts[1], parts[2]
            if method == "PUT":
                return (*STATE.create_backend(vs, rs, _json(raw)), None)
            if method == "PATCH":
                return (*STATE.update_backend(vs, rs, _json(raw)), None)
            if method == "GET":
                return (*STATE.get_backend(vs, rs), None)
            if method == "DELETE":
                return (*STATE.remove_backend(vs, rs), None)
        raise BadRequest(405, f"method {method} not allowed on {path}")

    def _control(self, method: str, path: str, raw: bytes):
        """The test-only routes: NOT Gorb's API."""
        try:
            body = _json(raw) if raw else {}
        except BadRequest as e:
            return self._send(400, {"error": e.message})
        with STATE.lock:
            if path == "/_standin/journal" and method == "GET":
                return self._send(200, STATE.journal)
            if path == "/_standin/journal" and method == "DELETE":
                STATE.journal.clear()
                return self._send(200, None)
            if path == "/_standin/reset" and method == "POST":
                STATE.reset()
                return self._send(200, None)
            if path == "/_standin/fail-after" and method == "POST":
                mode = str(body.get("mode", "500"))
                if mode not in ("500", "drop", "exit"):
                    return self._send(400, {"error": f"unknown mode {mode!r}"})
                STATE.fault_after = int(body.get("after", 0))
                STATE.fault_times = None if body.get("times") is None else int(body["times"])
                STATE.fault_mode = mode
                return self._send(200, None)
            if path == "/_standin/backend-status" and method == "POST":
                b = STATE.backends.get(body.get("backend"))
                if b is None or b["service"] != body.get("service"):
                    return self._send(404, {"error": ERR_NOT_FOUND[1]})
                b["status"] = int(body.get("status", b["status"]))
                b["health"] = float(body.get("health", b["health"]))
                return self._send(200, None)
            if path == "/_standin/state" and method == "GET":
                return self._send(200, {"services": STATE.services, "backends": STATE.backends})
        return self._send(404, {"error": f"no stand-in control route {method} {path}"})


def _json(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(400, "unexpected EOF" if not raw.strip() else f"invalid character in JSON body: {e}") from None


def _parsed(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", "replace")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="a stand-in for Gorb's REST API (tests only)")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=int(os.environ.get("STANDIN_PORT", "4672")))
    args = ap.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"standin: Gorb stand-in on {args.host}:{args.port}, default host {STATE.default_host}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
