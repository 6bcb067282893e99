#!/bin/bash
# The `paper`-scale sweeps with 3 seeds, for a session lent a GPU: one prepared command, in priority order,
# stopping cleanly before a time budget (an unfinished sweep resumes from its checkpoints if the same --out is
# used again). About 50 s per CIFAR10-Quick x4 ensemble on an H200 (49 s measured).
#
# Issue 34 first: Table 1 on three seeds with the corrected recipe (the `paper` scale now trains biases at twice
# the rate, Caffe's lr_mult 2), then the same sweep with one rate for every parameter (`NAME@uniform` runs NAME
# with --set optim.bias_lr_mult=1, the recipe of the results committed before issue 34, into NAME-paper-uniform),
# for the side-by-side comparison; then issue 21's sweeps.
#
# Prepare on the CPU machine (the data travels inside the checkout, ignored by git):
#   mkdir -p .gpu-data && cp ../shared/data/cifar10-jpeg.tar.gz .gpu-data/ && echo /.gpu-data/ >> .git/info/exclude
# Run on the device (its python3 has torch and every dependency; nothing can be fetched there):
#   run(command="BUDGET_S=540 bash scripts/gpu_paper_scale.sh", carry=[".gpu-data"], timeout_s=590)
# What comes back under $OUT: log.txt and paper-scale.tar.gz (each sweep's results.md, results.csv, seeds.csv
# and figures, and every run's metrics.json, eval.jsonl and run.json; no weights).
#
# On the CPU, `SCALE=smoke DATA= SWEEPS="table3 table1" BUDGET_S=120 OUT=/tmp/gpu-out RUNS=/tmp/gpu-runs
# PYTHON=.venv/bin/python SKIP_INSTALL=1 bash scripts/gpu_paper_scale.sh` checks the script on the embedded data.
set -u -o pipefail
SCALE=${SCALE:-paper}
DATA=${DATA-.gpu-data/cifar10-jpeg.tar.gz}
BUDGET_S=${BUDGET_S:-540}
SEEDS=${SEEDS:-3}
OUT=${OUT:?set OUT to a folder for the results}
RUNS=${RUNS:-runs-gpu}
PY=${PYTHON:-python3}
# the order: what the issue's open findings need first, then the rest of the CIFAR tables
SWEEPS=${SWEEPS:-"table1 table1@uniform table5 table3 mcl-ce table4 bagging-control table2 table6"}

mkdir -p "$OUT" "$RUNS"
exec > >(tee -a "$OUT/log.txt") 2>&1
start=$(date +%s)
[ -n "${SKIP_INSTALL:-}" ] || $PY -m pip install -q --no-deps --no-build-isolation . || exit 1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

for entry in $SWEEPS; do
    sweep=${entry%@*}
    extra=() name="$sweep-$SCALE"
    if [ "$entry" != "$sweep" ]; then  # NAME@uniform: one rate for every parameter
        extra=(--set optim.bias_lr_mult=1) name="$sweep-$SCALE-${entry#*@}"
    fi
    left=$(( BUDGET_S - ($(date +%s) - start) ))
    if [ "$left" -lt 60 ]; then
        echo "== budget spent: $entry and later sweeps not started"
        break
    fi
    echo "== $entry [$SCALE] seeds 0..$((SEEDS - 1)), $left s left"
    # SIGTERM first: a run checkpoints and exits 75, and the same command resumes it
    timeout -s TERM -k 30 "$left" $PY -m mheads reproduce "$sweep" --scale "$SCALE" ${DATA:+--data "$DATA"} \
        --out "$RUNS/$name" --seeds "$SEEDS" "${extra[@]}" | tail -n 30
    echo "== $entry: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
done

tar -czf "$OUT/paper-scale.tar.gz" --exclude='*.safetensors' --exclude='checkpoints' "$RUNS"
echo "== done after $(( $(date +%s) - start )) s; $(du -h "$OUT/paper-scale.tar.gz" | cut -f1) of results"
