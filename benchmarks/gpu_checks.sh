#!/usr/bin/env bash
# The GPU checks, in one script with a time limit per stage: correctness, throughput (each figure twice), the
# speedrun (twice), the peers. Logs and records go to OUT_DIR; the last lines printed are the summary.
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [correctness] [throughput] [targets] [speedrun] [peers]
#   (default: all but targets, which throughput includes)
#
# correctness: the GPU tests (pytest -m gpu), and 10 graphed CNN runs in fresh processes (all must end ok)
# throughput:  the sweep arch x execution=graph,fused x precision 32,bf16-mixed, compare's table, a second
#              run of the fused FP32 pair (the targets are read twice), bench_overhead's graphed comparisons
# targets:     the fused FP32 pair alone
# speedrun:    scripts/speedrun.py with execution=fused and bf16, 5 seeds, twice
# peers:       benchmarks/jax_peer.py against execution=fused, 3 repeats
set -u
out=${1:?usage: gpu_checks.sh OUT_DIR [stages...]}; shift
stages=${*:-correctness throughput speedrun peers}
mkdir -p "$out"; work=$(mktemp -d); start=$(date +%s)
say() { echo "[$(( $(date +%s) - start ))s] $*" | tee -a "$out/summary.txt"; }
stage() {  # stage NAME SECONDS COMMAND...: run it under a time limit, log it, say how it ended
  local name=$1 limit=$2; shift 2; local s=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1; local rc=$?
  say "$name: exit $rc after $(( $(date +%s) - s )) s"; return $rc
}
records() {  # one line per results.json under $1: status, speed, MFU, busy, preparation
  python3 - "$1" <<'PY' | tee -a "$out/summary.txt"
import sys
from pathlib import Path
from hwbench.record.results import read_record
for path in sorted(Path(sys.argv[1]).rglob("results.json")):
    r = read_record(path)
    speed, res = r.train_speed, r.resources
    mfu = f"mfu {speed.mfu} of-measured {speed.mfu_of_measured_peak}" if speed else "mfu None"
    print(f"{path.parent.name}: {r.status} {r.reason or ''} steady {speed.samples_per_sec if speed else 0:,.0f}/s "
          f"{mfu} busy {res.gpu_busy_percent if res else None} "
          f"prepare {r.execution.prepare_seconds if r.execution else None} acc {r.metrics.test_acc if r.metrics else None} "
          f"pid {r.job.pid if r.job else None} noisy {r.noise}")
PY
}
say "$(nvidia-smi -L 2>&1 | head -1); $(python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)')"

if [[ $stages == *correctness* ]]; then
  for i in $(seq 0 9); do  # fresh processes, five at a time: a crash is a crash whatever else runs
    (cd "$work" && timeout 300 python3 -m hwbench device=gpu arch=cnn execution=graph epochs=3 output_root="$work/crash" \
      > "$out/crash$i.log" 2>&1; echo "run $i exit $?" >> "$out/crash.txt") &
    (( i % 5 == 4 )) && wait
  done
  say "10 graphed CNN runs: $(sort "$out/crash.txt" | tr '\n' ' ')"
  records "$work/crash"
  # every test marked gpu; four workers where the image has pytest-xdist (they share the GPU: no test times)
  workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4")
  stage gpu_tests 420 python3 -m pytest -o addopts="-ra $workers" -q -p no:cacheprovider -m gpu tests
  tail -3 "$out/gpu_tests.log" | tee -a "$out/summary.txt"
fi
if [[ $stages == *throughput* ]]; then
  stage sweep 420 python3 -m hwbench -m device=gpu arch=ffnn,cnn execution=graph,fused device.precision=32,bf16-mixed \
    output_root="$work/sweep"
  records "$work/sweep"
  python3 -m hwbench.compare "$work/sweep" --out "$out/report" > "$out/compare.log" 2>&1
  for kind in graph fused; do
    stage overhead_$kind 300 python3 benchmarks/bench_overhead.py --device gpu --epochs 6 --repeats 3 execution=$kind
    tail -8 "$out/overhead_$kind.log" | tee -a "$out/summary.txt"
  done
fi
if [[ $stages == *throughput* || $stages == *targets* ]]; then  # the fused FP32 pair: the targets, read again
  stage targets 240 python3 -m hwbench -m device=gpu arch=ffnn,cnn execution=fused output_root="$work/again"
  records "$work/again"
fi
if [[ $stages == *speedrun* ]]; then
  for run in 1 2; do
    stage speedrun$run 300 python3 scripts/speedrun.py device=gpu execution=fused device.precision=bf16-mixed
    tail -10 "$out/speedrun$run.log" | grep -v '^{' | tee -a "$out/summary.txt"
  done
fi
if [[ $stages == *peers* ]]; then
  stage jax_peer 400 python3 benchmarks/jax_peer.py --device gpu --repeats 3 execution=fused
  tail -8 "$out/jax_peer.log" | grep -v '^{' | tee -a "$out/summary.txt"
fi
rm -rf "$work"
say "done"
