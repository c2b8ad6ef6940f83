#!/usr/bin/env python3
"""What the shared HTTP session of tesson's Gorb client buys, against one-connection-per-request.

Registers a group the way ``tesson run --gorb`` does (PUT the service, PUT one backend per shard)
and withdraws it (DELETE the service), ROUNDS times, with:

- tesson's ``GorbClient`` (one ``requests`` session: keep-alive, connection reused), and
- the baseline: a bare ``requests.request`` per call (a new TCP connection every time),

both against the same Gorb stand-in (tests/gorb_standin/server.py, started here on 127.0.0.1 unless
``--url`` names another, e.g. the stand-in container), and prints calls per second and the ratio.

    .venv/bin/python benchmarks/gorb_client.py [--rounds 200] [--shards 16] [--url http://127.0.0.1:4672]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register(call, rounds: int, shards: int) -> int:
    n = 0
    for r in range(rounds):
        vs = f"bench-{r}-80-tcp"
        call("PUT", f"/service/{vs}", {"port": 80, "protocol": "tcp", "host": "127.0.0.1"})
        for i in range(shards):
            call("PUT", f"/service/{vs}/bench-{i}-80-tcp", {"host": "127.0.0.1", "port": 30000 + i})
        call("DELETE", f"/service/{vs}", None)
        n += shards + 2
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--url", help="a running Gorb (or stand-in) to use instead of starting one")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per side")
    args = ap.parse_args()

    import requests

    from tesson.gorb_client import GorbClient

    proc = None
    url = args.url
    if not url:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/gorb_standin/server.py"), "--host", "127.0.0.1", "--port", str(port)],
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(url + "/service", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
    try:
        client = GorbClient(url)

        def tesson_call(method, path, body):
            client.request(method, path, body)

        def bare_call(method, path, body):
            data = None if body is None else json.dumps(body)
            r = requests.request(method, url + path, data=data, timeout=(3.05, 10))
            if r.status_code != 200:
                raise SystemExit(f"unexpected {r.status_code} for {method} {path}: {r.text}")

        results = {}
        for name, call in (("baseline: new connection per call", bare_call), ("tesson GorbClient (shared session)", tesson_call)):
            best = None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                n = register(call, args.rounds, args.shards)
                dt = time.perf_counter() - t0
                best = dt if best is None or dt < best else best
            results[name] = (n, best)
            print(f"{name:40s} {n} calls in {best:.3f} s  = {n / best:8.0f} calls/s")
        (n0, t0), (n1, t1) = results.values()
        print(f"ratio (tesson / baseline throughput): {(n1 / t1) / (n0 / t0):.2f}x")
        per_group = t1 / args.rounds * 1000
        print(f"registering + withdrawing one group of {args.shards} shards with tesson's client: {per_group:.1f} ms")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
