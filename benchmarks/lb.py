#!/usr/bin/env python3
"""The embedded balancer's cost: one shard group measured with wrk straight at a shard and through
the balancer, in one run.

The group: ``tesson run -u pu -n 2 -p PORT:8080`` of a shard that is nginx (from the balancer's
image) answering ``GET /`` with a tiny fixed body over keep-alive connections, so the shard is fast
enough that the balancer's own cost shows. Three targets, interleaved round by round so they share
the machine's noise:

- ``direct``: shard 0's container address (its bridge IP):8080, no balancer;
- ``lb``: the balancer container's address:8080 (nginx stream proxy to both shards);
- ``front``: the published front door at this host's own non-loopback address:PORT (Docker's
  DNAT in front of the balancer, the path an outside client takes).

Three loads:

- ``low``: one connection paced at one request every 5 ms (a wrk Lua ``delay()``), about 200 req/s:
  requests meet an idle machine, as most requests of a lightly used service do;
- ``1conn``: one connection, back to back (``-t1 -c1``): the fastest a single client can go;
- ``high``: ``-t2 -c32``: more clients than the machine has CPUs.

Printed: requests/s, p50 and p99 latency per target and load, medians over the rounds, and the
ratios to ``direct``.

    .venv/bin/python benchmarks/lb.py [--rounds 3] [--duration 5] [--high-conns 32] [--lb-image IMAGE]
                                      [--shard nginx|cgi|demo]

Other shards: ``--shard cgi`` is the test suite's busybox httpd whose CGI forks a shell per request
(and closes the connection after each answer), an app that does some work per request;
``--shard demo`` is ``tesson demo-server`` (Python's http.server).

Target (issue 4): through the balancer, p50 latency at most 1.2x the direct one at low load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP = "bench4-lb"
PORT = 28290

# The shard: nginx serving a fixed 3-byte body on 8080, one worker (each shard has one CPU).
SHARD_CONF = (
    "daemon off; worker_processes 1; pid /tmp/shard.pid; error_log stderr warn;\n"
    "events { worker_connections 1024; }\n"
    "http { access_log off; keepalive_requests 1000000;\n"
    "  server { listen 8080 reuseport; location / { return 200 'ok\\n'; } } }\n"
)


def tesson(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tesson", *args], capture_output=True, text=True, cwd=ROOT)


def default_lb_image() -> str:
    for name in (os.environ.get("TESSON_IMAGE"), "tesson:latest", "tesson-base:bookworm"):
        if name and subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0:
            return name
    raise SystemExit("no balancer image: build tesson:latest (make image) or scripts/base-image")


def container_ip(name: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return out[0]


def host_address() -> str:
    """This host's own address on its default route (not loopback: that path is docker-proxy's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, threads: int, conns: int, duration: int, script: str | None = None, prefix=()) -> dict:
    """One wrk run; ``prefix`` runs it elsewhere (``["ip", "netns", "exec", NS]``)."""
    r = subprocess.run(
        [*prefix, "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", *(["-s", script] if script else []), url],
        capture_output=True, text=True, timeout=duration + 60,
    )
    if r.returncode:
        raise SystemExit(f"wrk failed on {url}: {r.stderr.strip()}")
    out = r.stdout
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99,
            "errors": (errors.group(1) if errors else "") + (f" non2xx={non2xx.group(1)}" if non2xx else "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--high-conns", type=int, default=32)
    ap.add_argument("--pace-ms", type=int, default=5, help="low load: milliseconds between requests")
    ap.add_argument("--lb-image", default=None)
    ap.add_argument("--shard", choices=("nginx", "cgi", "demo"), default="nginx",
                    help="nginx: a static reply on keep-alive connections (default); cgi: busybox httpd CGI "
                    "(a fork per request); demo: tesson demo-server")
    ap.add_argument("--json", action="store_true", help="also print the medians as JSON")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    image = a.lb_image or default_lb_image()

    tesson("stop", "-g", GROUP, "--purge", "-t", "1")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "shard.json"
        if a.shard == "nginx":
            script = "printf '%s' \"$SHARD_CONF\" > /tmp/shard.conf && exec nginx -e stderr -c /tmp/shard.conf"
            cfg.write_text(json.dumps({"Entrypoint": ["sh", "-c", script], "Env": [f"SHARD_CONF={SHARD_CONF}"]}))
        elif a.shard == "demo":
            cfg.write_text(json.dumps({"Entrypoint": ["tesson"], "Cmd": ["demo-server", "--port", "8080"]}))
        else:
            cfg.write_text("{}")
        shard_image = image
        if a.shard == "cgi":
            sys.path.insert(0, str(ROOT))
            from tests import conftest

            client = conftest.docker_api()
            try:
                client.inspect_image(conftest.SHARD_IMAGE)
            except Exception:
                repo, tag = conftest.SHARD_IMAGE.split(":")
                client.import_image_from_data(conftest._shard_image_tar(), repository=repo, tag=tag,
                                              changes=['CMD ["/start"]', "EXPOSE 8080/tcp", "WORKDIR /"])
            shard_image = conftest.SHARD_IMAGE
        r = tesson("run", "-g", GROUP, "-u", "pu", "-n", "2", "-p", f"{PORT}:8080", "--lb-image", image,
                   "-c", str(cfg), shard_image)
        if r.returncode:
            raise SystemExit(f"tesson run failed: {r.stderr.strip()}")
    try:
        path = "/cgi-bin/id" if a.shard == "cgi" else "/"
        targets = {
            "direct": f"http://{container_ip(GROUP + '-0')}:8080{path}",
            "lb": f"http://{container_ip(GROUP + '-lb')}:8080{path}",
            "front": f"http://{host_address()}:{PORT}{path}",
        }
        for name, url in targets.items():  # every target answers before measuring
            deadline = time.monotonic() + 10
            while subprocess.run(["wrk", "-t1", "-c1", "-d1s", url], capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} ({url}) does not answer")
        pace = Path(tempfile.mkdtemp()) / "pace.lua"
        pace.write_text(f"function delay()\n  return {a.pace_ms}\nend\n")
        loads = {"low": (1, 1, str(pace)), "1conn": (1, 1, None), "high": (2, a.high_conns, None)}
        results: dict = {(l, t): [] for l in loads for t in targets}
        for rnd in range(a.rounds):
            for load, (threads, conns, script) in loads.items():
                for target, url in targets.items():
                    res = wrk(url, threads, conns, a.duration, script)
                    results[(load, target)].append(res)
                    print(f"round {rnd + 1} {load:5} {target:6} {res['rps']:9.0f} req/s  p50 {res['p50']:.3f} ms"
                          f"  p99 {res['p99']:.3f} ms {res['errors']}", file=sys.stderr)
    finally:
        tesson("stop", "-g", GROUP, "--purge", "-t", "1")

    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in results.items()}
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} CPUs, {platform.release()}; "
          f"shard {a.shard}; balancer image {image}; wrk {a.duration}s x {a.rounds} rounds, medians")
    print(f"{'load':5} {'target':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   {'rps/direct':>10} {'p50/direct':>10} {'p99/direct':>10}")
    for load, (threads, conns, script) in loads.items():
        d = med[(load, "direct")]
        how = f"-t{threads} -c{conns}" + (f", one request per {a.pace_ms} ms" if script else "")
        for target in targets:
            m = med[(load, target)]
            print(f"{load:5} {target:7} {m['rps']:9.0f} {m['p50']:8.3f} {m['p99']:8.3f}   "
                  f"{m['rps'] / d['rps']:10.2f} {m['p50'] / d['p50']:10.2f} {m['p99'] / d['p99']:10.2f}"
                  f"   ({how})")
    ratio = med[("low", "lb")]["p50"] / med[("low", "direct")]["p50"]
    verdict = "met" if ratio <= 1.2 else "NOT met"
    added = (med[("low", "lb")]["p50"] - med[("low", "direct")]["p50"]) * 1000
    print(f"target p50(lb)/p50(direct) at low load <= 1.2: {ratio:.2f} ({verdict}); "
          f"the balancer adds {added:.0f} us at p50")
    if a.json:
        print(json.dumps({f"{l}/{t}": v for (l, t), v in med.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
