#!/usr/bin/env python3
"""Failed requests during ``scale`` 2 -> 4 -> 2 and a rolling ``update``, per front door, and how
long a drain takes with and without an open connection.

Per door (``kernel``: nftables DNAT kept by the agent; ``nginx``: the embedded balancer, the
baseline that already dropped nothing), in the same run, interleaved over ``--rounds``:

- ``tesson run -g bench-kc-DOOR -n 2 -p 127.0.0.1:PORT:8080 --lb DOOR IMAGE demo-server``;
- wrk (``-t1 -c8``, keep-alive, loopback) through the door for the whole change:
  ``scale -n 4``, ``scale -n 2``, ``update --image B`` (B: IMAGE plus one label, so every shard
  is replaced), each step timed;
- wrk's requests, socket errors (connect, read, write, timeout) and non-2xx answers.

Then the drain alone (:func:`tesson.runtime.drain.drain` on a demo-server container): with no
connection (after nginx's lag, and with none as behind the kernel door), with one idle kept-alive
connection open, and with one the client closes after a second, for ``--drain-timeout``.

With ``--baseline-image OLD``: what one front-door step of the kernel door costs, the
``tesson kernel-agent sync`` that scale and update exec in the agent (``docker exec``, wall time),
in a group whose agent runs IMAGE and one whose agent runs OLD, interleaved (``--execs`` each).

    .venv/bin/python benchmarks/change_door.py [--rounds 3] [--image IMAGE] [--drain-timeout 3]
        [--baseline-image OLD] [--execs 20]

The image must carry this tesson (the kernel agent runs it): ``scripts/build-image --tag T``.
Needs root (nft), wrk and the daemon on this machine.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TESSON = [sys.executable, "-m", "tesson"]
PORTS = {"kernel": 28416, "nginx": 28417}


def sh(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "GORB_URI": ""})
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


def timed(*cmd: str) -> float:
    t = time.monotonic()
    sh(*cmd)
    return time.monotonic() - t


def image_b(client, a: str) -> str:
    tag = "bench-kc:b"
    for _ in client.build(fileobj=io.BytesIO(f'FROM {a}\nLABEL io.tesson.bench="b"\n'.encode()), tag=tag, rm=True,
                          network_mode="none", decode=True):
        pass
    return tag


def wrk_start(port: int) -> subprocess.Popen:
    p = subprocess.Popen(["wrk", "-t1", "-c8", "-d300s", f"http://127.0.0.1:{port}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    return p


def wrk_stop(p: subprocess.Popen) -> dict:
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    n = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(n.group(1)) if n else 0,
            "errors": tuple(map(int, errors.groups())) if errors else (0, 0, 0, 0),
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def one_round(door: str, a: str, b: str, drain_timeout: float) -> dict:
    group, port = f"bench-kc-{door}", PORTS[door]
    subprocess.run([*TESSON, "stop", "-g", group, "--purge", "-t", "2"], capture_output=True, cwd=ROOT)
    sh(*TESSON, "run", "-g", group, "--lb", door, "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb-image", a, a,
       "demo-server", "--port", "8080")
    wrk = wrk_start(port)
    steps = {}
    try:
        dt = str(drain_timeout)
        steps["scale 2->4"] = timed(*TESSON, "scale", "-g", group, "-n", "4", "--drain-timeout", dt)
        steps["scale 4->2"] = timed(*TESSON, "scale", "-g", group, "-n", "2", "--drain-timeout", dt)
        steps["update 2"] = timed(*TESSON, "update", "-g", group, "--image", b, "--drain-timeout", dt)
    finally:
        result = wrk_stop(wrk)
        subprocess.run([*TESSON, "stop", "-g", group, "--purge", "-t", "2"], capture_output=True, cwd=ROOT)
    return {**result, "steps": steps}


def drain_times(client, image: str, timeout: float) -> dict:
    from tesson.runtime.drain import drain

    cid = client.create_container(image, ["demo-server", "--port", "8080"], name="bench-kc-drain")["Id"]
    out = {}
    try:
        client.start(cid)
        info = client.inspect_container(cid)
        ip = info["NetworkSettings"]["IPAddress"]
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((ip, 8080), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        time.sleep(0.3)  # the probe's own connection is gone
        floors = {"nginx/gorb lag": None, "kernel, no lag": 0.0}
        for what, floor in floors.items():
            times = []
            for _ in range(5):
                t = time.monotonic()
                drain(client, cid, timeout) if floor is None else drain(client, cid, timeout, floor)
                times.append(time.monotonic() - t)
            out[f"no connection ({what})"] = statistics.median(times)
        s = socket.create_connection((ip, 8080), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        t = time.monotonic()
        drain(client, cid, timeout, 0.0)
        out["1 idle keep-alive connection"] = time.monotonic() - t
        threading.Timer(1.0, s.close).start()
        t = time.monotonic()
        drain(client, cid, timeout, 0.0)
        out["1 connection the client closes after 1 s"] = time.monotonic() - t
    finally:
        client.remove_container(cid, force=True)
    return out


def exec_times(client, images: dict[str, str], n: int) -> dict[str, float]:
    """Median wall time of ``docker exec AGENT tesson kernel-agent sync`` per agent image."""
    groups = {}
    try:
        for k, (what, image) in enumerate(images.items()):
            group = f"bench-kc-exec{k}"
            subprocess.run([*TESSON, "stop", "-g", group, "--purge", "-t", "1"], capture_output=True, cwd=ROOT)
            sh(*TESSON, "run", "-g", group, "--lb", "kernel", "-n", "2", "-p", f"127.0.0.1:{28414 + k}:8080",
               "--lb-image", image, image, "demo-server", "--port", "8080")
            groups[what] = group
        times: dict[str, list[float]] = {what: [] for what in groups}
        for _ in range(n):
            for what, group in groups.items():
                t = time.monotonic()
                ex = client.exec_create(f"{group}-lb", ["tesson", "kernel-agent", "sync", "--group", group])
                client.exec_start(ex)
                assert client.exec_inspect(ex["Id"])["ExitCode"] == 0
                times[what].append(time.monotonic() - t)
        return {what: statistics.median(ts) for what, ts in times.items()}
    finally:
        for group in groups.values():
            subprocess.run([*TESSON, "stop", "-g", group, "--purge", "-t", "1"], capture_output=True, cwd=ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", default=os.environ.get("TESSON_TEST_IMAGE", "tesson:latest"))
    ap.add_argument("--drain-timeout", type=float, default=3.0)
    ap.add_argument("--doors", default="kernel,nginx")
    ap.add_argument("--baseline-image", default="")
    ap.add_argument("--execs", type=int, default=20)
    args = ap.parse_args()
    import docker

    client = docker.APIClient(version="auto")
    b = image_b(client, args.image)
    doors = [d for d in args.doors.split(",") if d]
    results: dict[str, list[dict]] = {d: [] for d in doors}
    for n in range(args.rounds):
        for door in doors:
            r = one_round(door, args.image, b, args.drain_timeout)
            results[door].append(r)
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps"].items())
            print(f"round {n + 1} {door:6s}: {r['requests']} requests, socket errors (connect, read, write, timeout) "
                  f"{r['errors']}, non-2xx {r['non2xx']}; {steps}", flush=True)
    print("\nper door (sum over rounds):")
    for door, rs in results.items():
        errs = [sum(x) for x in zip(*(r["errors"] for r in rs))]
        med = {k: statistics.median(r["steps"][k] for r in rs) for k in rs[0]["steps"]}
        print(f"  {door:6s} requests {sum(r['requests'] for r in rs)}, socket errors {errs} = {sum(errs)}, "
              f"non-2xx {sum(r['non2xx'] for r in rs)}; medians: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
    if args.baseline_image:
        e = exec_times(client, {"image": args.image, "baseline": args.baseline_image}, args.execs)
        print(f"\nexec'd kernel-agent sync, median of {args.execs}: {args.image} {e['image'] * 1000:.0f} ms, "
              f"{args.baseline_image} {e['baseline'] * 1000:.0f} ms ({e['image'] / e['baseline']:.2f}x)")
    d = drain_times(client, args.image, args.drain_timeout)
    print(f"\ndrain (--drain-timeout {args.drain_timeout}): " + ", ".join(f"{k} {v:.2f} s" for k, v in d.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
