#!/usr/bin/env bash
# Re-run every experiment behind the README (hours on 2 CPU cores; minutes per run on a GPU).
# Each sweep skips runs already finished, so this can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$(cd .. && pwd)/shared/tiktoken_cache}"
for c in sanity sanity_gpt2 sanity_mask3; do
  [ -f results/sanity/$c/metrics.jsonl ] || python train.py --config configs/$c.yaml --out results/sanity/$c --no-progress
done
# A committed log is never deleted: a run directory that holds one is left as it is.
[ -f results/fig1/div97_fig1_s0/metrics.jsonl ] || python train.py --config configs/div97_fig1.yaml \
  --train.max_steps=3000 --train.threads=2 --out results/fig1/div97_fig1_s0 --no-progress
# The README's main command, seed 0 (its committed log was stopped by hand at step 17,156; this runs
# to the stop rule or 1e5 steps).
[ -f results/main/div97_s0/metrics.jsonl ] || python train.py --config configs/div97.yaml \
  --out results/main/div97_s0 --no-progress
for sweep in grok warmup_3k warmup warmup_tune warmup_tune2 warmup_tune3 warmup_tune4 warmup_tune5 warmup_tune6 warmup_tune7 warmup_grid_padded div97_char div97_char_padded ablate_wd ablate_frac ablate_grokfast ablate_grokfast_wd0 ablate_tokens ablate_lr confirm_fast \
             fast_probe fast_probe2 fast_probe3 fast_probe4 lever_precision levers fast_confirm; do
  [ -f sweeps/$sweep.yaml ] && python sweep.py sweeps/$sweep.yaml --jobs 2
done
# The unpadded warm-up grid, replaced by warmup_grid_padded after 10 of its 24 runs: only those 10.
python sweep.py sweeps/warmup_grid.yaml --jobs 2 --configs add97_l2 sub97_l2 --seeds 0 1 2
python sweep.py sweeps/warmup_grid.yaml --jobs 2 --configs add113_l2 sub113_l2 --seeds 0 1
