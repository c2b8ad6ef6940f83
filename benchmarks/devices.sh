#!/usr/bin/env bash
# I/O discovery (issue 13): `tesson topology` (which reads every PCI function and OS device) against
# `lstopo-no-graphics --whole-io`, and `tesson run --dry-run --near DEVICE` against hwloc's way of
# doing the same (`hwloc-distrib --restrict $(hwloc-calc os=DEVICE)`: two processes, timed as one
# shell line; and `hwloc-distrib --restrict CPUS` alone with the CPUs given), on the largest dump with
# devices in tests/fixtures. Goal: tesson at most 2x hwloc.
#
#   bash benchmarks/devices.sh [ROUNDS] [RUNS]   (default 8 rounds of 10 runs of each)
#
# As dryrun.sh: several short hyperfine rounds, each with every command, and the median of the
# per-round ratios (the load of a shared machine drifts between one command's block and the next).
# The plans are checked equal first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python as a user's install runs it: with compiled bytecode. tesson's is compiled below, as pip does;
# PYTHONDONTWRITEBYTECODE (some shells and CI set it) would make every timed run compile again any
# module whose .pyc is missing, so it is unset and hyperfine's warm-up runs write those.
unset PYTHONDONTWRITEBYTECODE
ROUNDS=${1:-8}
RUNS=${2:-10}
# TESSON=PATH times another install (say a venv of the distribution's python3: the venv here may
# be a slower interpreter build, see benchmarks/README.md)
TESSON=${TESSON:-.venv/bin/tesson}
DUMPS=tests/fixtures/hwloc-sysfs
DEVICE=${DEVICE:-ib0}

for tool in hyperfine hwloc-distrib hwloc-calc lstopo-no-graphics tar python3; do
  command -v "$tool" >/dev/null || { echo "devices.sh: $tool is missing (apt-get install hyperfine hwloc)" >&2; exit 2; }
done
[ -x "$TESSON" ] || { echo "devices.sh: $TESSON is missing (make venv)" >&2; exit 2; }

# the largest dump with devices (PCI functions in sys/bus/pci/devices): the one with the most PUs
largest=""
best=0
tmpbase=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmpbase=/dev/shm
work=$(mktemp -d "$tmpbase/tesson-devices-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
for f in "$DUMPS"/*.tar.bz2; do
  tar -tjf "$f" > "$work/list"  # (not piped into grep -q: pipefail would see tar's SIGPIPE)
  grep -q 'sys/bus/pci/devices/.' "$work/list" || continue
  name=$(basename "$f" .tar.bz2)
  mkdir -p "$work/$name" && tar -xjf "$f" -C "$work/$name"
  r=$(find "$work/$name" -mindepth 1 -maxdepth 1 -type d | head -1)
  cpus=$("$TESSON" --fsroot "$r" topology --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pus"]))')
  if [ "$cpus" -gt "$best" ]; then best=$cpus; largest=$name; root=$r; fi
done
[ -n "$largest" ] || { echo "devices.sh: no dump with devices in $DUMPS" >&2; exit 2; }

.venv/bin/python -m compileall -q tesson >/dev/null
export HWLOC_FSROOT="$root" HWLOC_THISSYSTEM=1 HWLOC_COMPONENTS=-x86
cpus=$(hwloc-calc "os=$DEVICE")
n=$("$TESSON" --fsroot "$root" run --dry-run --near "$DEVICE" -u core --format json bench | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["shards"]))')

python3 - "$root" "$n" "$cpus" "$DEVICE" "$TESSON" <<'PY'
import json, subprocess, sys
root, n, cpus, dev, tesson = sys.argv[1:]
hw = subprocess.run(["hwloc-distrib", "--restrict", cpus, "--taskset", "--to", "core", n], capture_output=True, text=True, check=True).stdout.split()
hw = [[i for i in range(int(x, 16).bit_length()) if int(x, 16) >> i & 1] for x in hw]
ts = json.loads(subprocess.run([tesson, "--fsroot", root, "run", "--dry-run", "--near", dev, "-u", "core",
                                "-n", n, "--format", "json", "bench"], capture_output=True, text=True, check=True).stdout)
assert [s["cpus"] for s in ts["shards"]] == hw, "tesson and hwloc-distrib --restrict disagree"
print(f"same {len(hw)} shards near {dev} from both")
PY

echo "dump: $largest ($best PUs), device $DEVICE, $ROUNDS rounds of $RUNS runs each"
for r in $(seq "$ROUNDS"); do
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/round$r.json" \
    -n "lstopo --whole-io" "lstopo-no-graphics -p --whole-io" \
    -n "tesson topology" "$TESSON --fsroot $root topology" \
    -n "hwloc-distrib --restrict" "hwloc-distrib --restrict $cpus --to core $n" \
    -n "tesson run --dry-run --near" "$TESSON --fsroot $root run --dry-run --near $DEVICE -u core -n $n --format json bench" \
    >/dev/null 2>&1
  hyperfine --shell=bash --warmup 3 --runs "$RUNS" --export-json "$work/calc$r.json" \
    -n "hwloc-calc + hwloc-distrib" "hwloc-distrib --restrict \$(hwloc-calc os=$DEVICE) --to core $n" >/dev/null 2>&1
done

python3 - "$work" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
pairs = [("tesson topology", "lstopo --whole-io"), ("tesson run --dry-run --near", "hwloc-distrib --restrict"),
         ("tesson run --dry-run --near", "hwloc-calc + hwloc-distrib")]
med = {}
ratios = {p: [] for p in pairs}
for r in range(1, rounds + 1):
    res = {x["command"]: x for x in json.load(open(f"{work}/round{r}.json"))["results"]}
    res.update({x["command"]: x for x in json.load(open(f"{work}/calc{r}.json"))["results"]})
    for k, v in res.items():
        med.setdefault(k, []).extend(v["times"])
    for a, b in pairs:
        ratios[(a, b)].append(res[a]["median"] / res[b]["median"])
for k, t in med.items():
    print(f"{k:30s} median {statistics.median(t)*1e3:6.1f} ms  min {min(t)*1e3:6.1f} ms  ({len(t)} runs)")
for (a, b), rs in ratios.items():
    m = statistics.median(rs)
    print(f"{a} / {b}: median of rounds {m:.2f}x  ({'met' if m <= 2.0 else 'MISSED'} <= 2x)")
PY
