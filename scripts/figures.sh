#!/usr/bin/env bash
# Redraw every figure of the README and REPORT from the committed logs (seconds, no training).
# Each figure lands in the folder of the study whose runs it draws. A figure whose runs are not
# there yet is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
E=experiments

plot() {  # plot OUT GLOB [plot.py options...]
  local out=$1 pattern=$2; shift 2
  local dirs=()
  for d in $pattern; do [ -f "$d/metrics.jsonl" ] && dirs+=("$d"); done
  if [ ${#dirs[@]} -eq 0 ]; then echo "skip $out: no runs match $pattern"; return; fi
  python plot.py "${dirs[@]}" --out "$out" "$@"
}

plot $E/sanity/sanity.png "$E/sanity/sanity" --title "I love machine learning (char-level, 1 layer)"
plot $E/div97_main/div97_main.png "$E/div97_main/div97_s0" --title "x/y mod 97, configs/div97.yaml, seed 0"
plot $E/div97_confirm/div97_confirm.png "$E/div97_confirm/div97_s* $E/div97_confirm_noclip/div97_s*" \
  --group-by train.grad_clip --panels --title "configs/div97.yaml with and without clipping, seeds 0-7, 1e4 steps"
# the progress measures (issue 27): the main job, and the same without weight decay (no grokking)
P="x/y mod 97, configs/div97.yaml, seed 0"
plot $E/div97_progress/div97_progress_s0.png "$E/div97_progress/div97_s0" --title "$P, progress measures"
plot $E/div97_memorise/div97_memorise.png "$E/div97_memorise/div97_s0" --title "$P, no weight decay: no grokking"
plot $E/div97_paper/div97_paper.png "$E/div97_paper/div97_paper_s*" \
  --title "x/y mod 97, paper setting (3 seeds; dotted: first 99%)"
plot $E/div97_paper_collapse/div97_paper_collapse.png "$E/div97_paper_collapse/div97_paper_s0" \
  --title "x/y mod 97, paper setting, seed 0 (fp32): grokking, then collapses"
plot $E/div97_fig1/div97_fig1_start.png "$E/div97_fig1/div97_fig1_s0" \
  --title "x/y mod 97, Adam without weight decay (Figure 1 setting), first 3,000 steps"
plot $E/div97_fig1_1e5/div97_fig1_1e5.png "$E/div97_fig1_1e5/div97_fig1_s0" \
  --title "x/y mod 97, Figure 1 setting (Adam, no decay, fp32), seed 0; dashed: paper" \
  --mark "1e3=paper: train ~100%" --mark "1e5=paper: generalization starts" --mark "1e6=paper: val ~100%"
plot $E/ablate_tokens/div97_char_tokens.png "$E/ablate_tokens/*char*_s*" \
  --title "x/y mod 97, character-level tokens (budget 1e4 steps)"
plot $E/ablate_wd/ablate_wd.png "$E/ablate_wd/*_s*" --group-by train.weight_decay
plot $E/ablate_frac/ablate_frac.png "$E/ablate_frac/*_s*" --group-by data.train_frac
plot $E/ablate_grokfast/ablate_grokfast.png "$E/ablate_grokfast/*_s*" --group-by train.grokfast_lambda
plot $E/ablate_grokfast_wd0/ablate_grokfast_wd0.png "$E/ablate_grokfast_wd0/*_s* $E/ablate_wd/*weight_decay0.0_s*" \
  --group-by train.grokfast_alpha train.grokfast_lambda --title "Grokfast-EMA without weight decay (lambda 0: no filter)"
plot $E/ablate_tokens/ablate_tokens.png "$E/ablate_tokens/*_s*" --group-by data.tokenizer
plot $E/ablate_lr/ablate_lr.png "$E/ablate_lr/*_s*" --group-by train.lr
plot $E/levers/levers.png "$E/lever_precision/*bf16_s* $E/levers/*_s*" \
  --group-by train.schedule train.grad_clip train.eps train.optimizer model.init_scale train.loss \
  train.perpendicular_grad train.weight_decay train.decay --panels \
  --title "x/y mod 97, one change each from the paper's setting (bf16, 1e4 steps, no early stop)"
plot $E/div97_fast_confirm/div97_fast_confirm.png "$E/div97_fast_confirm/div97_fast_s*" \
  --title "div97_fast.yaml, seeds 0-7, 1e4 steps, no early stop"
# the warm-up grid with Adam (as configs/warmup/ ship) and with Muon: study, then recipe
for grid in "warmup_adam:AdamW recipe" "warmup_muon:Muon recipe"; do
  name=${grid%%:*} recipe=${grid#*:}
  plot $E/$name/$name.png "$E/$name/*_s*" --group-by name --panels --split test \
    --title "warm-up grid, $recipe (padded numbers), test accuracy, one line per seed (char-level)"
  for c in add97_l2 sub97_l2 add113_l2 sub113_l2 add97_l1 sub97_l1 add113_l1 sub113_l1; do
    plot $E/$name/${name}_$c.png "$E/$name/${c}_s*" \
      --title "warm-up: $c ($recipe, char tokens, padded), seeds 0-2"
  done
done
# x/y mod 97 with character tokens and the warm-up recipe (Muon): study, then title
for study in "div97_char:character tokens, warm-up recipe (Muon), seeds 0-2, 1e4 steps" \
             "div97_char_padded:character tokens padded to 2 digits, warm-up recipe (Muon), seeds 0-2" \
             "div97_char_padded_1e5:char tokens padded, warm-up recipe, seeds 0-1, 1e5 steps"; do
  name=${study%%:*}
  out=$E/$name/$name.png; [ $name = div97_char ] && out=$E/div97_char/div97_char_muon.png
  plot $out "$E/$name/*_s*" --title "x/y mod 97, ${study#*:}"
done
# The archive: superseded warm-up studies, still cited by the report.
A=$E/archive
plot $A/warmup_first/warmup_first.png "$A/warmup_first/*_s*" --group-by name --split val \
  --title "warm-up: a+b, a-b mod 97/113, 1-2 layers (char-level)"
plot $A/warmup_3k/warmup_3k.png "$A/warmup_3k/*_s*" --group-by name --split test \
  --title "warm-up at 3,000 steps, 3 seeds: a+b, a-b mod 97/113, 1-2 layers (char-level)"
plot $A/warmup_grid_unpadded/warmup_grid_unpadded.png "$A/warmup_grid_unpadded/*_s*" --group-by name --panels --split test \
  --title "warm-up grid, unpadded numbers (Muon), test accuracy, one line per seed (char-level)"
plot $A/warmup_grid_unpadded/warmup_grid_unpadded_sub97_l2.png "$A/warmup_grid_unpadded/sub97_l2_s*" \
  --title "warm-up grid: sub97_l2 (character tokens, unpadded numbers), finished seeds of 0-2"
# issue 34: the paper's operations by training fraction (runs land across sessions)
plot $E/ops_fraction/ops_fraction.png "$E/ops_fraction*/operations_*_s*" --versus data.train_frac --group-by data.op \
  --title "the paper's operations, 5,000-step budget, seeds 0-1: best val accuracy and steps to val 99%"
