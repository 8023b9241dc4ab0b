"""Metrics: functions from a model and tensors to numbers, registered by name.

SPLIT_METRICS are computed on each evaluated split from one pass of the model (logged as
<split>_<name>); MODEL_METRICS from the weights alone (logged under their own name);
TASK_METRICS from the model and the run's task (progress.Task: data config, tokenizer, training
batch), each giving {logged name: value}, {} where it does not apply: the progress measures of
progress.py. A new metric is a new entry; train.py logs every entry at every evaluation,
evaluate.py prints the split metrics.
"""

import contextlib
import math
from collections import defaultdict

import torch

import progress
from levers import token_losses
from tokens import batch_model_inputs, slice_batch


def _loss(out):
    """Mean loss over the loss positions (the answer tokens and the final EOS)."""
    return (out["token_loss"] * out["mask"]).sum().item() / max(int(out["mask"].sum()), 1)


def _accuracy(out):
    """Share of sequences whose every loss token is the model's argmax (teacher forcing; for
    whole answers this is greedy decoding's exact-match rate)."""
    right = out["correct"] | ~out["mask"]
    return int(right.all(dim=1).sum()) / max(right.size(0), 1)


SPLIT_METRICS = {"loss": _loss, "acc": _accuracy}


@torch.no_grad()
def _weight_norm(model):
    """L2 norm of all parameters together: the quantity weight decay shrinks while grokking."""
    return math.sqrt(sum(float(p.float().pow(2).sum()) for p in model.parameters()))


MODEL_METRICS = {"weight_norm": _weight_norm}

# (model, task) -> {logged name: value}; each gets the whole training split whatever `subset` is.
TASK_METRICS = {"fourier_spectrum": progress.spectrum_measures, "fourier_losses": progress.loss_measures}


@torch.no_grad()
def split_outputs(model, batch, eval_batch_size, context, loss_kind="softmax"):
    """Per-position loss, correctness and loss mask (N, P) of a split, in chunks of eval_batch_size."""
    was_training = model.training
    model.eval()
    parts = defaultdict(list)
    # One set of answer columns for the whole split, so that every chunk's (n, P) outputs stack.
    attention_mask, positions = batch_model_inputs(batch)
    for start in range(0, batch["idx"].size(0), eval_batch_size):
        part = slice_batch(batch, slice(start, start + eval_batch_size))
        with context():
            logits, _ = model(part["idx"], attention_mask=None if attention_mask is None else part["attention_mask"],
                              positions=positions)
        mask, targets = part["loss_mask"], part["targets"]
        if positions is not None:
            mask, targets = mask[:, positions], targets[:, positions]
        parts["token_loss"].append(token_losses(logits, targets, loss_kind, torch.float64))
        parts["correct"].append(logits.float().argmax(-1) == targets)
        parts["mask"].append(mask.bool())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def score_split(model, batch, eval_batch_size, context, loss_kind="softmax"):
    """{metric name: value} of every SPLIT_METRICS entry on one split."""
    out = split_outputs(model, batch, eval_batch_size, context, loss_kind)
    return {name: metric(out) for name, metric in SPLIT_METRICS.items()}


def evaluation_record(model, batches, train_cfg, context, subset=0, task=None):
    """One log record's metrics: every split metric on every evaluated split, then the model's,
    then the task's if a task (progress.Task) is given.

    subset > 0 scores only the first `subset` examples of each split (the splits are shuffled,
    so that is a fixed random sample) and says so in the record.
    """
    record = {}
    for split in [s for s in train_cfg.eval_splits if s in batches]:
        batch = batches[split] if not subset else slice_batch(batches[split], slice(0, subset))
        for name, value in score_split(model, batch, train_cfg.eval_batch_size, context, train_cfg.loss).items():
            record[f"{split}_{name}"] = value
    for name, metric in MODEL_METRICS.items():
        record[name] = metric(model)
    if task is not None:
        for metric in TASK_METRICS.values():
            record.update(metric(model, task))
    if subset:
        record["subset"] = subset
    return record


@torch.no_grad()
def greedy_complete(model, tokenizer, prompts, max_new_tokens, device="cpu", context=None, batch_size=4096):
    """Greedy completions of many prompts (model.generate), batched by prompt length so that no
    row needs padding; each completion ends before its EOS or where the block size ends it."""
    model.eval()
    groups = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[len(tokenizer.encode(prompt))].append(i)
    completions = [""] * len(prompts)
    eos = tokenizer.eos_id
    for length, members in groups.items():
        room = model.config.block_size - length  # new tokens that fit after the start token and the prompt
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            idx = torch.tensor([[eos] + tokenizer.encode(prompts[i]) for i in chunk], device=device)
            with context() if context else contextlib.nullcontext():
                out = model.generate(idx, min(max_new_tokens, room), eos_id=eos)
            for i, new in zip(chunk, out[:, idx.size(1):].tolist()):
                completions[i] = tokenizer.decode(new[:new.index(eos)] if eos in new else new)
    return completions


def exact_match(model, tokenizer, examples, device="cpu", context=None):
    """Share of (prompt, completion) pairs that greedy decoding reproduces exactly, and the misses."""
    prompts = [p for p, _ in examples]
    longest = max(len(tokenizer.encode(c)) for _, c in examples) + 1
    got = greedy_complete(model, tokenizer, prompts, longest, device, context)
    mistakes = [(p, c, g) for (p, c), g in zip(examples, got) if g != c]
    return 1 - len(mistakes) / len(examples), mistakes
