"""Score a checkpoint: loss, answer accuracy (teacher forcing) and exact match (greedy decoding).

    python evaluate.py --checkpoint checkpoints/div97.pt --all-pairs
    python evaluate.py --checkpoint runs/add97_l1 --split test --show-mistakes 5 --json out.json

Loss and accuracy count only the answer tokens and the final EOS, never the question.
"""

import argparse
import contextlib
import json
from collections import defaultdict

import torch
import torch.nn.functional as F

from common import (UserError, batch_model_inputs, encode_examples, load_checkpoint,
                    model_from_checkpoint, run_cli, slice_batch)
from generate_data import all_pair_examples, load_splits


@torch.no_grad()
def evaluate_batch(model, batch, eval_batch_size=8192, model_context=contextlib.nullcontext):
    """Mean loss over loss positions and the share of sequences whose every loss token is the
    model's argmax (with teacher forcing: for greedy decoding this is the exact-match rate)."""
    was_training = model.training
    model.eval()
    total_loss, total_tokens, total_correct = 0.0, 0, 0
    n = batch["idx"].size(0)
    for start in range(0, n, eval_batch_size):
        part = slice_batch(batch, slice(start, start + eval_batch_size))
        attention_mask, positions = batch_model_inputs(part)
        with model_context():
            logits, _ = model(part["idx"], attention_mask=attention_mask, positions=positions)
        logits = logits.float()
        mask, targets = part["loss_mask"], part["targets"]
        if positions is not None:
            mask, targets = mask[:, positions], targets[:, positions]
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        total_loss += (per_token * mask).sum().item()
        total_tokens += int(mask.sum().item())
        right = (logits.argmax(-1) == targets) | ~mask
        total_correct += int(right.all(dim=1).sum().item())
    model.train(was_training)
    return {"loss": total_loss / max(total_tokens, 1), "acc": total_correct / max(n, 1)}


@torch.no_grad()
def greedy_complete(model, tokenizer, prompts, max_new_tokens, device="cpu", batch_size=4096):
    """Greedy completions of many prompts, batched by prompt length (no padding needed)."""
    model.eval()
    groups = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[len(tokenizer.encode(prompt))].append(i)
    completions = [""] * len(prompts)
    block = model.config.block_size
    for length, members in groups.items():
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            idx = torch.tensor([[tokenizer.eos_id] + tokenizer.encode(prompts[i]) for i in chunk], device=device)
            finished = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            for _ in range(max_new_tokens):
                if idx.size(1) > block:
                    break
                logits, _ = model(idx)
                next_id = logits[:, -1].argmax(-1)
                next_id = torch.where(finished, torch.full_like(next_id, tokenizer.eos_id), next_id)
                idx = torch.cat([idx, next_id[:, None]], dim=1)
                finished |= next_id == tokenizer.eos_id
                if bool(finished.all()):
                    break
            for row, i in zip(idx.tolist(), chunk):
                new = row[length + 1:]
                if tokenizer.eos_id in new:
                    new = new[:new.index(tokenizer.eos_id)]
                completions[i] = tokenizer.decode(new)
    return completions


def exact_match(model, tokenizer, examples, device="cpu"):
    """Share of (prompt, completion) pairs that greedy decoding reproduces exactly, and the misses."""
    prompts = [p for p, _ in examples]
    longest = max(len(tokenizer.encode(c)) for _, c in examples) + 1
    got = greedy_complete(model, tokenizer, prompts, longest, device)
    mistakes = [(p, c, g) for (p, c), g in zip(examples, got) if g != c]
    return 1 - len(mistakes) / len(examples), mistakes


def score(model, tokenizer, examples, mask_first=0, device="cpu"):
    batch = {k: v.to(device) for k, v in encode_examples(tokenizer, examples, mask_first).items()}
    if batch["idx"].size(1) > model.config.block_size:
        raise UserError(f"these examples need {batch['idx'].size(1)} positions; the model has {model.config.block_size}")
    numbers = evaluate_batch(model, batch)
    numbers["exact_match"], mistakes = exact_match(model, tokenizer, examples, device)
    numbers["count"] = len(examples)
    return numbers, mistakes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt file or a run directory")
    parser.add_argument("--split", choices=["train", "val", "test"], action="append",
                        help="split(s) to score (repeatable; default: all three)")
    parser.add_argument("--all-pairs", action="store_true", help="also score every valid equation of the operation")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--show-mistakes", type=int, default=0, metavar="N", help="print up to N wrong answers per set")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model, tokenizer, cfg = model_from_checkpoint(load_checkpoint(args.checkpoint))
    model.to(args.device)
    splits = load_splits(cfg.data, log=lambda m: None)
    sets = {name: splits[name] for name in (args.split or ["train", "val", "test"]) if splits[name]}
    if args.all_pairs:
        if cfg.data.kind != "modular":
            raise UserError("--all-pairs needs a model trained on modular data")
        sets["all-pairs"] = all_pair_examples(cfg.data.op, cfg.data.p)
    results = {}
    print(f"{'set':10s} {'count':>7s} {'loss':>9s} {'acc':>8s} {'exact':>8s}")
    for name, examples in sets.items():
        numbers, mistakes = score(model, tokenizer, examples, cfg.data.mask_first, args.device)
        results[name] = numbers
        print(f"{name:10s} {numbers['count']:7d} {numbers['loss']:9.4f} {numbers['acc']:8.2%} {numbers['exact_match']:8.2%}")
        for prompt, want, got in mistakes[:args.show_mistakes]:
            print(f"    {prompt}{want}  but the model says {prompt}{got}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": str(args.checkpoint), "results": results}, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
