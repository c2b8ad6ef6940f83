#!/usr/bin/env bash
# A whole `tesson run --dry-run` process against a whole `hwloc-distrib` process, side by side with
# hyperfine, on the largest shared sysfs dump (issue 2: tesson must take at most 2x hwloc's time).
#
#   bash benchmarks/dryrun.sh [RUNS]        (default 60 runs of each, after 5 warm-up runs)
#
# Both read the same unpacked folder (in /dev/shm when there is one) and print the same shards:
# the script checks that first. hwloc runs with its x86 CPUID backend off (HWLOC_COMPONENTS=-x86),
# which is both the faster hwloc and the one that answers for the dump rather than for this machine.
# tesson's bytecode is compiled first, as pip does on a normal install (PYTHONDONTWRITEBYTECODE would
# otherwise make every run recompile tesson's modules).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-60}
TESSON=.venv/bin/tesson
DUMPS=${TESSON_SHARED:-../shared}/fixtures/hwloc-sysfs

for tool in hyperfine hwloc-distrib tar python3; do
  command -v "$tool" >/dev/null || { echo "dryrun.sh: $tool is missing (apt-get install hyperfine hwloc)" >&2; exit 2; }
done
[ -x "$TESSON" ] || { echo "dryrun.sh: $TESSON is missing (make venv)" >&2; exit 2; }

# the largest dump: the one with the most CPUs
largest=$(ls "$DUMPS"/*.tar.bz2 | sed 's|.*/||; s|\.tar\.bz2$||' | sort -n | tail -1)
[ -n "$largest" ] || { echo "dryrun.sh: no dumps in $DUMPS" >&2; exit 2; }
tmpbase=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmpbase=/dev/shm
work=$(mktemp -d "$tmpbase/tesson-dryrun-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xjf "$DUMPS/$largest.tar.bz2" -C "$work"
root=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
[ -d "$root/sys" ] || { echo "dryrun.sh: no sys/ in $largest" >&2; exit 2; }

env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q tesson >/dev/null

export HWLOC_FSROOT="$root" HWLOC_THISSYSTEM=1 HWLOC_COMPONENTS=-x86
cores=$("$TESSON" --fsroot "$root" topology --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cores"]))')
n=$cores
hw_cmd="hwloc-distrib --to core $n"
ts_cmd="$TESSON --fsroot $root run --dry-run -u core -n $n --format json bench"

# same answer first
python3 - "$root" "$n" <<'EOF'
import json, subprocess, sys
root, n = sys.argv[1], sys.argv[2]
hw = subprocess.run(["hwloc-distrib", "--taskset", "--to", "core", n], capture_output=True, text=True, check=True).stdout.split()
hw = [[i for i in range(int(x, 16).bit_length()) if int(x, 16) >> i & 1] for x in hw]
ts = json.loads(subprocess.run([".venv/bin/tesson", "--fsroot", root, "run", "--dry-run", "-u", "core", "-n", n,
                                "--format", "json", "bench"], capture_output=True, text=True, check=True).stdout)
assert [s["cpus"] for s in ts["shards"]] == hw, "tesson and hwloc-distrib disagree"
print(f"same {len(hw)} shards from both")
EOF

echo "dump: $largest ($cores cores), $RUNS runs each"
hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$work/result.json" \
  -n hwloc-distrib "$hw_cmd" \
  -n "tesson run --dry-run" "$ts_cmd" \
  -n "python -c pass (venv start, for reference)" ".venv/bin/python -c pass" >/dev/null

python3 - "$work/result.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
hw, ts, py = (r[k] for k in ("hwloc-distrib", "tesson run --dry-run", "python -c pass (venv start, for reference)"))
for name, x in (("hwloc-distrib", hw), ("tesson run --dry-run", ts), ("python -c pass (venv)", py)):
    print(f"{name:24s} mean {x['mean']*1e3:6.1f} ms  median {x['median']*1e3:6.1f} ms  min {x['min']*1e3:6.1f} ms  (+-{x['stddev']*1e3:.1f})")
ratio_mean = ts["mean"] / hw["mean"]
ratio_median = ts["median"] / hw["median"]
print(f"ratio tesson / hwloc-distrib: mean {ratio_mean:.2f}x, median {ratio_median:.2f}x (target <= 2.00x: "
      f"{'met' if ratio_median <= 2.0 else 'MISSED'})")
print(f"tesson beyond a bare venv python: {(ts['median'] - py['median'])*1e3:.1f} ms (median)")
EOF
