#!/usr/bin/env bash
# A whole `tesson run --dry-run` process against a whole `hwloc-distrib` process, side by side with
# hyperfine, on the largest sysfs dump in tests/fixtures (issue 2: tesson must take at most 2x hwloc's time).
#
#   bash benchmarks/dryrun.sh [ROUNDS] [RUNS]   (default 15 rounds of 10 runs of each, after warm-up)
#
# On a shared machine the load drifts while hyperfine runs one command's block after the other's, so
# the script runs several short rounds (hwloc, tesson, bare Python in each) and reports the median of
# the per-round ratios, and the ratio of the best times, next to the pooled figures.
#
# Both read the same unpacked folder (in /dev/shm when there is one) and print the same shards:
# the script checks that first. hwloc runs with its x86 CPUID backend off (HWLOC_COMPONENTS=-x86),
# which is both the faster hwloc and the one that answers for the dump rather than for this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python as a user's install runs it: with compiled bytecode. tesson's is compiled below, as pip does;
# PYTHONDONTWRITEBYTECODE (some shells and CI set it) would make every timed run compile again any
# module whose .pyc is missing, so it is unset and hyperfine's warm-up runs write those.
unset PYTHONDONTWRITEBYTECODE
ROUNDS=${1:-15}
RUNS=${2:-10}
# TESSON=PATH times another install (say a venv of the distribution's python3: the venv here may
# be a slower interpreter build, see benchmarks/README.md)
TESSON=${TESSON:-.venv/bin/tesson}
DUMPS=tests/fixtures/hwloc-sysfs

for tool in hyperfine hwloc-distrib tar python3; do
  command -v "$tool" >/dev/null || { echo "dryrun.sh: $tool is missing (apt-get install hyperfine hwloc)" >&2; exit 2; }
done
[ -x "$TESSON" ] || { echo "dryrun.sh: $TESSON is missing (make venv)" >&2; exit 2; }

# the largest dump: the one with the most CPUs
largest=$(for f in "$DUMPS"/*.tar.bz2; do [ -e "$f" ] && basename "$f" .tar.bz2; done | sort -n | tail -1)
[ -n "$largest" ] || { echo "dryrun.sh: no dumps in $DUMPS" >&2; exit 2; }
tmpbase=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmpbase=/dev/shm
work=$(mktemp -d "$tmpbase/tesson-dryrun-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xjf "$DUMPS/$largest.tar.bz2" -C "$work"
root=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
[ -d "$root/sys" ] || { echo "dryrun.sh: no sys/ in $largest" >&2; exit 2; }

.venv/bin/python -m compileall -q tesson >/dev/null

export HWLOC_FSROOT="$root" HWLOC_THISSYSTEM=1 HWLOC_COMPONENTS=-x86
cores=$("$TESSON" --fsroot "$root" topology --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cores"]))')
n=$cores
hw_cmd="hwloc-distrib --to core $n"
ts_cmd="$TESSON --fsroot $root run --dry-run -u core -n $n --format json bench"

# same answer first
python3 - "$root" "$n" "$TESSON" <<'EOF'
import json, subprocess, sys
root, n, tesson = sys.argv[1:4]
hw = subprocess.run(["hwloc-distrib", "--taskset", "--to", "core", n], capture_output=True, text=True, check=True).stdout.split()
hw = [[i for i in range(int(x, 16).bit_length()) if int(x, 16) >> i & 1] for x in hw]
ts = json.loads(subprocess.run([tesson, "--fsroot", root, "run", "--dry-run", "-u", "core", "-n", n,
                                "--format", "json", "bench"], capture_output=True, text=True, check=True).stdout)
assert [s["cpus"] for s in ts["shards"]] == hw, "tesson and hwloc-distrib disagree"
print(f"same {len(hw)} shards from both")
EOF

echo "dump: $largest ($cores cores), $ROUNDS rounds of $RUNS runs each"
for r in $(seq "$ROUNDS"); do
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/round$r.json" \
    -n hwloc-distrib "$hw_cmd" \
    -n "tesson run --dry-run" "$ts_cmd" \
    -n "python -c pass" ".venv/bin/python -c pass" >/dev/null 2>&1
done

python3 - "$work" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
names = ("hwloc-distrib", "tesson run --dry-run", "python -c pass")
times = {k: [] for k in names}
ratios = []
for r in range(1, rounds + 1):
    res = {x["command"]: x for x in json.load(open(f"{work}/round{r}.json"))["results"]}
    for k in names:
        times[k].extend(res[k]["times"])
    ratio = res["tesson run --dry-run"]["median"] / res["hwloc-distrib"]["median"]
    ratios.append(ratio)
    print(f"round {r}: hwloc-distrib {res['hwloc-distrib']['median']*1e3:5.1f} ms, "
          f"tesson {res['tesson run --dry-run']['median']*1e3:5.1f} ms, ratio {ratio:.2f}x")
for k in names:
    t = sorted(times[k])
    print(f"{k:22s} median {statistics.median(t)*1e3:6.1f} ms  mean {statistics.mean(t)*1e3:6.1f} ms  "
          f"min {t[0]*1e3:6.1f} ms  ({len(t)} runs)")
hw, ts, py = (sorted(times[k]) for k in names)
med_ratio = statistics.median(ratios)
print(f"ratio tesson / hwloc-distrib: median of rounds {med_ratio:.2f}x, best times {ts[0] / hw[0]:.2f}x, "
      f"pooled medians {statistics.median(ts) / statistics.median(hw):.2f}x")
print(f"target <= 2.00x: {'met' if med_ratio <= 2.0 else 'MISSED'} (median of rounds)")
print(f"tesson beyond a bare venv Python start: {(statistics.median(ts) - statistics.median(py))*1e3:.1f} ms (medians)")
EOF
