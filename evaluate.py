"""Score a checkpoint: loss, answer accuracy (teacher forcing) and exact match (greedy decoding).

    python evaluate.py --checkpoint checkpoints/div97.pt --all-pairs
    python evaluate.py --checkpoint runs/add97_l1 --split test --show-mistakes 5 --json out.json
    python evaluate.py --checkpoint checkpoints/warmup_add113_l2.pt --split val --by-digits

Loss and accuracy count only the answer tokens and the final EOS, never the question.
"""

import argparse
import json

from checkpoint import load_checkpoint, model_from_checkpoint
from metrics import SPLIT_METRICS, exact_match, score_split
from runlog import ArgumentParser, UserError, check_output_file, int_arg, run_cli, write_text
from runtime import forward_context, pick_device
from tasks import all_pair_examples, load_splits, parse_prompt
from tokens import encode_examples


def score(model, tokenizer, examples, cfg, device="cpu", context=None):
    """Every split metric (as train.py logs them) plus greedy exact match, on a list of examples."""
    context = context or forward_context(device)
    batch = {k: v.to(device) for k, v in encode_examples(tokenizer, examples, cfg.data.mask_first).items()}
    if batch["idx"].size(1) > model.config.block_size:
        raise UserError(f"these examples need {batch['idx'].size(1)} positions; the model has {model.config.block_size}")
    numbers = score_split(model, batch, cfg.train.eval_batch_size, context, cfg.train.loss)
    numbers["exact_match"], mistakes = exact_match(model, tokenizer, examples, device, context)
    numbers["count"] = len(examples)
    return numbers, mistakes


def exact_match_by_digits(examples, mistakes, op):
    """Greedy exact match grouped by the number of digits of each operand of 'x op y =': on
    character-level tokens '1+3' (a one-digit a, a three-digit b) is a different input shape
    from '2+2'. Leading zeros (data.pad_numbers) do not count, so padded and unpadded runs group
    alike. {group: {"count", "exact_match"}}, groups in sorted order."""
    wrong = {prompt for prompt, _, _ in mistakes}
    groups = {}
    for prompt, _ in examples:
        operands = parse_prompt(prompt, op)
        if operands is None:
            raise UserError(f"--by-digits needs equations 'x {op} y =', got the prompt {prompt!r}")
        key = (" " if len(op) > 1 else "").join([str(len(str(int(operands[0])))), op, str(len(str(int(operands[1]))))])
        count, right = groups.get(key, (0, 0))
        groups[key] = (count + 1, right + (prompt not in wrong))
    return {key: {"count": count, "exact_match": right / count} for key, (count, right) in sorted(groups.items())}


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt file or a run directory")
    parser.add_argument("--split", choices=["train", "val", "test"], action="append",
                        help="split(s) to score (repeatable; default: all three)")
    parser.add_argument("--all-pairs", action="store_true", help="also score every valid equation of the operation")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--show-mistakes", type=int_arg(), default=0, metavar="N",
                        help="print up to N wrong answers per set")
    parser.add_argument("--by-digits", action="store_true",
                        help="also give exact match per operand digit count (modular data): where the misses are")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--precision", choices=["checkpoint", "fp32", "bf16"], default="checkpoint",
                        help="run the model as it was trained (default), or force fp32 / bf16")
    args = parser.parse_args()
    if args.json:  # checked before the scoring, not found unwritable after it
        check_output_file(args.json, "--json")

    model, tokenizer, cfg = model_from_checkpoint(load_checkpoint(args.checkpoint))
    device = pick_device(args.device)
    model.to(device)
    precision = cfg.train.precision if args.precision == "checkpoint" else args.precision
    context = forward_context(device, precision)
    splits = load_splits(cfg.data, log=lambda m: None)  # a data set made on first use appears whole or not at all
    sets = {name: splits[name] for name in (args.split or ["train", "val", "test"]) if splits[name]}
    if (args.all_pairs or args.by_digits) and cfg.data.kind != "modular":
        raise UserError(f"--{'all-pairs' if args.all_pairs else 'by-digits'} needs a model trained on modular data")
    if args.all_pairs:
        sets["all-pairs"] = all_pair_examples(cfg.data)
    results = {}
    print(f"{args.checkpoint}: {precision}, {cfg.train.loss} loss, on {device}")
    columns = ["count", *SPLIT_METRICS, "exact_match"]
    print(f"{'set':10s}" + "".join(f" {c:>12s}" for c in columns))
    for name, examples in sets.items():
        numbers, mistakes = score(model, tokenizer, examples, cfg, device, context)
        results[name] = numbers
        print(f"{name:10s}" + "".join(f" {numbers[c]:12.6g}" for c in columns))
        for prompt, want, got in mistakes[:args.show_mistakes]:
            print(f"    {prompt}{want}  but the model says {prompt}{got}")
        if args.by_digits:
            numbers["by_digits"] = exact_match_by_digits(examples, mistakes, cfg.data.op)
            for key, group in numbers["by_digits"].items():
                print(f"    digits {key:6s} {group['count']:6d} equations, exact match {group['exact_match']:.4f}")
    if args.json:
        write_text(args.json, json.dumps({"checkpoint": str(args.checkpoint), "precision": precision,
                                          "results": results}, indent=2))


if __name__ == "__main__":
    run_cli(main)
