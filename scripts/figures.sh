#!/usr/bin/env bash
# Redraw every figure in the README from the committed logs in results/ (seconds, no training).
# A figure whose runs are not there yet is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p figures

plot() {  # plot OUT GLOB [plot.py options...]
  local out=$1 pattern=$2; shift 2
  local dirs=()
  for d in $pattern; do [ -f "$d/metrics.jsonl" ] && dirs+=("$d"); done
  if [ ${#dirs[@]} -eq 0 ]; then echo "skip $out: no runs match $pattern"; return; fi
  python plot.py "${dirs[@]}" --out "$out" "$@"
}

plot figures/sanity.png "results/sanity/sanity" --title "I love machine learning (char-level, 1 layer)"
plot figures/div97.png "results/grok/div97_s*" --title "x/y mod 97, paper setting (3 seeds; dotted: first 99%)"
plot figures/div97_fig1_start.png "results/fig1/div97_fig1_s0" --title "x/y mod 97, Adam without weight decay (Figure 1 setting), first 3,000 steps"
plot figures/div97_char.png "results/ablate_tokens/*char*_s*" --title "x/y mod 97, character-level tokens (budget 1e4 steps)"
plot figures/warmup_val.png "results/warmup/*_s*" --group-by name --split val \
  --title "warm-up: a+b, a-b mod 97/113, 1-2 layers (char-level)"
plot figures/warmup_3k.png "results/warmup_3k/*_s*" --group-by name --split test \
  --title "warm-up at 3,000 steps, 3 seeds: a+b, a-b mod 97/113, 1-2 layers (char-level)"
plot figures/ablate_wd.png "results/ablate_wd/*_s*" --group-by train.weight_decay
plot figures/ablate_frac.png "results/ablate_frac/*_s*" --group-by data.train_frac
plot figures/ablate_grokfast.png "results/ablate_grokfast/*_s*" --group-by train.grokfast_lambda
plot figures/ablate_grokfast_wd0.png "results/ablate_grokfast_wd0/*_s* results/ablate_wd/*weight_decay0.0_s*" \
  --group-by train.grokfast_alpha train.grokfast_lambda --title "Grokfast-EMA without weight decay (lambda 0: no filter)"
plot figures/ablate_tokens.png "results/ablate_tokens/*_s*" --group-by data.tokenizer
plot figures/ablate_lr.png "results/ablate_lr/*_s*" --group-by train.lr
plot figures/lever_precision_bf16.png "results/lever_precision/*bf16_s*" \
  --title "x/y mod 97, paper setting in bf16, 1e4 steps without early stop (issue 16)"
plot figures/lever_precision_fp32.png "results/lever_precision/*fp32_s*" \
  --title "x/y mod 97, paper setting in fp32, 1e4 steps without early stop (issue 16)"
plot figures/levers.png "results/lever_precision/*bf16_s* results/levers/*_s*" \
  --group-by train.schedule train.grad_clip train.eps train.optimizer model.init_scale train.loss \
  train.perpendicular_grad train.weight_decay train.decay --panels \
  --title "x/y mod 97, one change each from the paper's setting (bf16, 1e4 steps, no early stop)"
plot figures/div97_fast.png "results/fast_confirm/div97_fast_s*" \
  --title "div97_fast.yaml, seeds 0-7, 1e4 steps, no early stop"
plot figures/div97_main.png "results/main/div97_s0" \
  --title "div97.yaml as the quick start runs it (seed 0, fp32)"
plot figures/warmup_grid.png "results/warmup_grid/*_s*" --group-by name --panels --split test \
  --title "warm-up grid, unpadded numbers (Muon), test accuracy, one line per seed (char-level)"
plot figures/warmup_grid_padded.png "results/warmup_grid_padded/*_s*" --group-by name --panels --split test \
  --title "warm-up grid, tuned recipe (Muon, padded numbers), test accuracy, one line per seed (char-level)"
plot figures/div97_char_muon.png "results/div97_char/*_s*" \
  --title "x/y mod 97, character tokens, warm-up recipe (Muon), seeds 0-2, 1e4 steps"
plot figures/div97_char_padded.png "results/div97_char_padded/*_s*" \
  --title "x/y mod 97, character tokens padded to 2 digits, warm-up recipe (Muon), seeds 0-2"
for c in add97_l2 sub97_l2 add113_l2 sub113_l2; do
  plot figures/warmup_grid_$c.png "results/warmup_grid/${c}_s*" \
    --title "warm-up grid: $c (character tokens, unpadded numbers), finished seeds of 0-2"
done
for c in add97_l2 sub97_l2 add113_l2 sub113_l2 add97_l1 sub97_l1 add113_l1 sub113_l1; do
  plot figures/warmup_padded_$c.png "results/warmup_grid_padded/${c}_s*" \
    --title "warm-up grid: $c (character tokens, padded numbers, tuned recipe), seeds 0-2"
done
plot figures/div97_char_padded_1e5.png "results/div97_char_padded_1e5/*_s*" \
  --title "x/y mod 97, char tokens padded, warm-up recipe, seeds 0-1, 1e5 steps"
