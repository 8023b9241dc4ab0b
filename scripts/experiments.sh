#!/usr/bin/env bash
# Re-run every experiment the report cites (hours on 2 CPU cores; minutes per run on a GPU).
# Each study is a folder of experiments/ (archive/ holds probes and superseded tuning); a sweep
# skips runs already finished and never deletes a committed log, so this can be stopped and
# started again.
set -euo pipefail
cd "$(dirname "$0")/.."
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$(cd .. && pwd)/shared/tiktoken_cache}"
E=experiments
for c in sanity sanity_gpt2 sanity_mask3; do
  [ -f $E/sanity/$c/metrics.jsonl ] || python train.py --config configs/$c.yaml --out $E/sanity/$c --no-progress
done
[ -f $E/div97_fig1/div97_fig1_s0/metrics.jsonl ] || python train.py --config configs/div97_fig1.yaml \
  --train.max_steps=3000 --train.threads=2 --out $E/div97_fig1/div97_fig1_s0 --no-progress
# The main job as a user runs it, seed 0 (the README's first figure and checkpoints/div97.pt).
[ -f $E/div97_main/div97_s0/metrics.jsonl ] || python train.py --config configs/div97.yaml \
  --out $E/div97_main/div97_s0 --no-progress
# The paper's setting, seed 0, as the main command used to run it (its committed log was stopped
# by hand at step 15,849; this runs to the stop rule or 1e5 steps).
[ -f $E/div97_paper_collapse/div97_paper_s0/metrics.jsonl ] || python train.py --config configs/div97_paper.yaml \
  --out $E/div97_paper_collapse/div97_paper_s0 --no-progress
for sweep in $E/*/sweep.yaml $E/archive/*/sweep.yaml; do
  case $sweep in
    # The unpadded warm-up grid, replaced by warmup_muon after 10 of its 24 runs: only those 10.
    */warmup_grid_unpadded/*)
      python sweep.py $sweep --jobs 2 --configs add97_l2 sub97_l2 --seeds 0 1 2
      python sweep.py $sweep --jobs 2 --configs add113_l2 sub113_l2 --seeds 0 1 ;;
    *) python sweep.py $sweep --jobs 2 ;;
  esac
done
