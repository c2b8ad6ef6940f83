#!/usr/bin/env python3
"""A rolling ``tesson update`` of 16 shards against ``docker-compose up`` recreating 16 replicas.

Both run the tesson image's demo-server (it drains on SIGTERM), 16 instances, and go from image A
to image B (B = A plus one label: another id, so both tools must recreate every container):

- tesson: ``tesson run -g bench-u16 -n 16 -p 127.0.0.1:28418:8080 A demo-server`` (the embedded
  nginx balancer), then ``tesson update -g bench-u16 --image B`` (one shard at a time, each out of
  the front door, drained, replaced, settled, back in) and with ``--parallel 4``;
- compose: Debian's docker-compose v1 (``docker-compose``), a project with one service ``web``,
  ``up -d --scale web=16`` on A, then ``up -d --scale web=16`` with the file's image changed to
  B: compose stops, removes and recreates all 16 at once (no front door, no rolling).

Each round measures the update (resp. the second ``up``) alone, A -> B and back B -> A so every
round changes something; medians over ``--rounds``. The groups are made once and removed at the
end. Run on the daemon's machine: ``.venv/bin/python benchmarks/update16.py --rounds 3``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP, PROJECT, PORT = "bench-u16", "benchu16", 28418
TESSON = [sys.executable, "-m", "tesson"]


def sh(*cmd: str, env: dict | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "GORB_URI": "", **(env or {})})
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r.stdout


def timed(*cmd: str, env: dict | None = None) -> float:
    t = time.monotonic()
    sh(*cmd, env=env)
    return time.monotonic() - t


def image_b(a: str) -> str:
    import docker

    client = docker.APIClient(version="auto")
    tag = "t14-test:b"
    for _ in client.build(fileobj=io.BytesIO(f'FROM {a}\nLABEL io.tesson.test="b"\n'.encode()), tag=tag, rm=True,
                          network_mode="none", decode=True):
        pass
    return tag


COMPOSE = """version: "2.4"
services:
  web:
    image: ${IMAGE}
    command: ["demo-server", "--port", "8080"]
    stop_grace_period: 10s
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", default=os.environ.get("TESSON_TEST_IMAGE", "tesson:latest"))
    args = ap.parse_args()
    a = args.image
    b = image_b(a)
    folder = tempfile.mkdtemp(prefix="bench-u16-")
    with open(os.path.join(folder, "docker-compose.yml"), "w") as f:
        f.write(COMPOSE)
    compose = ["docker-compose", "-p", PROJECT, "-f", os.path.join(folder, "docker-compose.yml")]
    print(f"docker-compose: {sh('docker-compose', 'version', '--short').strip()}; images {a} -> {b}", flush=True)
    subprocess.run([*TESSON, "stop", "-g", GROUP, "--purge"], capture_output=True, cwd=ROOT)
    sh(*TESSON, "run", "-g", GROUP, "-n", "16", "-p", f"127.0.0.1:{PORT}:8080", "--lb-image", a, a, "demo-server", "--port", "8080")
    sh(*compose, "up", "-d", "--scale", "web=16", env={"IMAGE": a})
    times: dict[str, list[float]] = {"tesson update (1 at a time)": [], "tesson update --parallel 4": [],
                                     "docker-compose up (recreate 16)": []}
    try:
        current = a
        for n in range(args.rounds):
            for name in times:
                nxt = b if current == a else a
                if name.startswith("docker-compose"):
                    t = timed(*compose, "up", "-d", "--scale", "web=16", env={"IMAGE": nxt})
                    sh(*compose, "up", "-d", "--scale", "web=16", env={"IMAGE": current})  # back, untimed
                else:
                    extra = ["--parallel", "4"] if "parallel" in name else []
                    t = timed(*TESSON, "update", "-g", GROUP, "--image", nxt, *extra)
                    sh(*TESSON, "update", "-g", GROUP, "--image", current, "--parallel", "16", "--drain-timeout", "0")
                times[name].append(t)
                print(f"round {n + 1}: {name}: {t:.1f} s", flush=True)
    finally:
        subprocess.run([*compose, "down", "-t", "2"], capture_output=True, env={**os.environ, "IMAGE": a})
        subprocess.run([*TESSON, "stop", "-g", GROUP, "--purge", "-t", "2"], capture_output=True, cwd=ROOT)
    base = statistics.median(times["docker-compose up (recreate 16)"])
    print("\nmedians:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:34s} {med:6.1f} s  ({med / base:.2f}x compose)  per shard {med / 16:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
