"""Planning next to 50 groups (issue 12): the whole ``tesson run --dry-run`` process, which lists the
groups on the daemon and plans around them, against a whole ``hwloc-distrib`` process, on a 256-CPU
machine. Goal: tesson under 2x hwloc-distrib.

    flock /tmp/tesson-docker.lock .venv/bin/python benchmarks/exclusive_dryrun.py [ROUNDS]
    (TESSON=/path/to/bin/tesson times that install instead of the venv's)

The fixtures hold no 256-CPU dump, so one is built with tests/sysfs_builder.py: 4 packages x 2
NUMA nodes x 16 cores x 2 threads (256 PUs, L3 per NUMA node). 50 groups are put on the daemon as
labels only: one created, never started container each (the shard image), planned for that dump
(io.tesson.machine is the dump's): 10 exclusive groups of 8 cores (packed, so they fill 80 of the
128 cores) and 40 shared groups of 4 to 16 cores over the pool. Three commands are timed with
hyperfine in several short rounds (median of the per-round ratios): ``hwloc-distrib --to core 48``,
``tesson run --dry-run -u core -n 48`` (a shared group over the pool: hwloc-distrib --restrict) and
``tesson run --dry-run --exclusive -n 16`` (the packer, and the re-pins of the 40 shared groups),
and the shared one with no daemon reachable (the plan alone, to tell the cost of the 50 groups).
The containers are removed at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tesson import holdings, topology
from tesson import labels as L
from tesson.group import Spec
from tests import sysfs_builder

IMAGE = "tesson-test-shard:latest"
PREFIX = "bench12-"


def build_dump(where: str) -> str:
    root = Path(where) / "256"
    sysfs_builder.build(root, packages=4, cores=32, threads=2, numa_per_package=2, l3_per="numa",
                        mem_kb=64 * 1024 * 1024)
    return str(root)


def make_groups(client, topo) -> list[str]:
    from tesson import sharing
    from tesson.request import Placement

    claims: list = []
    made = []
    mid = holdings.machine_id(topo)
    for i in range(50):
        name = f"{PREFIX}{i:02d}"
        exclusive = "packed" if i < 10 else ""
        size = 8 if exclusive else 4 + (i % 4) * 4
        p = sharing.place(Placement(name, IMAGE, "core", topo, (), exclusive=exclusive, size_asked=size), claims)
        spec = Spec(name, IMAGE, [], [], {}, "core", list(p.shards), "none", exclusive=exclusive, machine=mid)
        labels = {**spec.labels(), L.ROLE: L.ROLE_SHARD, L.SHARD: "0"}
        client.create_container(IMAGE, command=["/start"], name=f"{name}-0", labels=labels)
        made.append(f"{name}-0")
        claim = holdings.claim_from_labels(labels)
        claims.append(claim)
    return made


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for tool in ("hyperfine", "hwloc-distrib"):
        if not shutil.which(tool):
            print(f"exclusive_dryrun.py: {tool} is missing (apt-get install hyperfine hwloc)", file=sys.stderr)
            return 2
    from tesson import docker_client

    client = docker_client.connect()
    tmp = tempfile.mkdtemp(prefix="tesson-bench12-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    made: list[str] = []
    try:
        root = build_dump(tmp)
        topo = topology.read(root)
        assert len(topo.pus) == 256
        made = make_groups(client, topo)
        # TESSON=PATH: another install (a venv of the distribution's python3, say: see the README)
        tesson = os.environ.get("TESSON") or str(ROOT / ".venv/bin/tesson")
        env = dict(os.environ, HWLOC_FSROOT=root, HWLOC_THISSYSTEM="1", HWLOC_COMPONENTS="-x86")
        # timed as a user's install runs: with bytecode (compiled here, as pip does; without
        # PYTHONDONTWRITEBYTECODE, hyperfine's warm-up runs write any .pyc still missing)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "compileall", "-q", str(ROOT / "tesson")], check=True, env=env)
        shared = f"{tesson} --fsroot {root} run --dry-run -u core -n 48 --format json bench"
        excl = f"{tesson} --fsroot {root} run --dry-run --exclusive -n 16 --format json bench"
        hw = "hwloc-distrib --to core 48"
        alone = f"env DOCKER_HOST=unix:///nonexistent {shared}"  # no daemon: the whole machine, no listing
        # the same answer first: the shared plan is hwloc-distrib --restrict POOL
        doc = json.loads(subprocess.run(shared.split(), capture_output=True, text=True, check=True, env=env).stdout)
        claims = holdings.claims_from_containers(client.containers(all=True, filters={"label": [L.GROUP]}), topo)
        pool = holdings.pool(topo, claims)
        mask = ",".join(f"0x{(pool >> (32 * w)) & 0xFFFFFFFF:08x}" for w in reversed(range(8)))
        ref = subprocess.run(["hwloc-distrib", "--restrict", mask, "--to", "core", "48"], capture_output=True, text=True,
                             check=True, env=env).stdout.split()
        from tests.hwloc_ref import parse_bitmap

        ref = [parse_bitmap(x) for x in ref]
        assert [s["cpus"] for s in doc["shards"]] == ref, "tesson and hwloc-distrib --restrict disagree"
        ex = json.loads(subprocess.run(excl.split(), capture_output=True, text=True, check=True, env=env).stdout)
        ngroups = len([c for c in claims if c.name.startswith(PREFIX) and not c.foreign])
        # what the daemon itself takes to answer the listing (one GET on its socket), and tesson's
        # reading of it into claims, each the median of 20 in this process
        from tesson import daemon_claims

        listing, reading = [], []
        for _ in range(20):
            t0 = time.perf_counter()
            found, _why = daemon_claims.list_containers()
            t1 = time.perf_counter()
            holdings.claims_from_containers(found or [], topo)
            listing.append(t1 - t0)
            reading.append(time.perf_counter() - t1)
        print(f"256-PU dump built with tests/sysfs_builder.py; {ngroups} groups on the daemon "
              f"({sum(1 for c in claims if c.exclusive and c.name.startswith(PREFIX))} exclusive), pool "
              f"{bin(pool).count('1')} PUs; the shared plan equals hwloc-distrib --restrict; the exclusive plan "
              f"takes {len(ex['shards'])} cores and re-pins {len(ex.get('repins', []))} shared shards")
        ratios = {"shared": [], "exclusive": [], "no daemon": []}
        med = {"hwloc-distrib": [], "shared": [], "exclusive": [], "no daemon": []}
        out = Path(tmp) / "round.json"
        for r in range(rounds):
            subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", "10", "--export-json", str(out),
                            "-n", "hwloc-distrib", hw, "-n", "shared", shared, "-n", "exclusive", excl, "-n", "no daemon", alone],
                           check=True, env=env, capture_output=True)
            res = {x["command"]: x["median"] for x in json.loads(out.read_text())["results"]}
            for k in med:
                med[k].append(res[k])
            for k in ratios:
                ratios[k].append(res[k] / res["hwloc-distrib"])
            print(f"round {r + 1}: hwloc-distrib {res['hwloc-distrib'] * 1e3:5.1f} ms, shared dry-run "
                  f"{res['shared'] * 1e3:5.1f} ms ({ratios['shared'][-1]:.2f}x), exclusive dry-run "
                  f"{res['exclusive'] * 1e3:5.1f} ms ({ratios['exclusive'][-1]:.2f}x), no daemon "
                  f"{res['no daemon'] * 1e3:5.1f} ms ({ratios['no daemon'][-1]:.2f}x)")
        extra = statistics.median(a - b for a, b in zip(med["shared"], med["no daemon"]))
        print(f"listing and planning around the 50 groups costs {extra * 1e3:.1f} ms (median of rounds); of that, the "
              f"daemon's answer to the listing {statistics.median(listing) * 1e3:.1f} ms and tesson's reading of it "
              f"into claims {statistics.median(reading) * 1e3:.1f} ms (medians of 20, in one process)")
        for k in ratios:
            m = statistics.median(ratios[k])
            print(f"{k} dry-run / hwloc-distrib: median of rounds {m:.2f}x "
                  f"(median {statistics.median(med[k]) * 1e3:.1f} ms vs {statistics.median(med['hwloc-distrib']) * 1e3:.1f} ms)"
                  f" -> target <= 2.00x {'met' if m <= 2 else 'MISSED'}")
    finally:
        for name in made:
            try:
                client.remove_container(name, force=True)
            except Exception as e:
                print(f"could not remove {name}: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
