"""Benchmark: training-step throughput, parallel runs, and time-to-grok.

    python bench.py            # throughput tables, parallel runs, time-to-grok (5 seeds each)
    python bench.py --quick    # a smoke test in under a minute (no time-to-grok)
    python bench.py --grok-only --grok-configs configs/div97.yaml   # the main job as shipped, seeds 0-4

Variants of one training step (batch 512, the config's optimizer, train.py's own train_step), all from the same
initial weights on the same batches, on number-level x/y mod 97 (6 tokens a row, no pads) and
character-level a+b mod 113 as configs/warmup/ write it, numbers padded to 3 digits (12 columns, all
real, 4 carrying loss; --set data.pad_numbers=false: about 9 real tokens and 3 carrying loss a row):
  baseline          eager fp32, logits and loss over every position (a plain nanoGPT-style step)
  answer-only       the last block and the head run only at the columns that carry loss
  bf16              bf16 autocast, fp32 weights and optimizer
  bf16+answer       both
  +explicit         and attention written out (model.attention: explicit): what configs/div97.yaml and
                    the warm-up configs use
Where SDPA runs, it runs its math kernel, as train.py does on a CPU (runtime.forward_context).
GFLOP/s counts the matmul work each variant really does; "peak" is this machine's own measured
fp32 (or bf16) matmul rate on large square matrices.
"""

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from config import load_config
from model import GPT
from runlog import GROKKED, ArgumentParser, first_step, int_arg, read_metrics, run_cli
from runtime import forward_context, slow_bf16_note
from tasks import load_splits
from tokens import batch_model_inputs, encode_examples, make_tokenizer
from training import TrainState, train_step


def matmul_peak(dtype, size=2048, repeats=5):
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def step_flops(cfg, batch, positions):
    """Matmul FLOPs of one forward + backward (x3 the forward) of the model on this batch, counted
    per row: every block on all T columns, the last block past its qkv (and the head) only at the
    P answer columns."""
    C, F, V, L = cfg.n_embd, cfg.d_ff, cfg.vocab_size, cfg.n_layer
    B, T = batch["idx"].shape
    qkv, rest = 2 * 3 * C * C, 2 * (C * C + 2 * C * F)  # per token: qkv; proj, up and down
    attention = 2 * 2 * T * C  # scores and weighted sum, per query over the padded row
    last = T if positions is None else len(positions)
    per_row = L * T * qkv + (L - 1) * T * (attention + rest) + last * (attention + rest + 2 * C * V)
    return 3 * B * per_row


def setup(config, overrides=()):
    cfg = load_config(config, [f"--{o}" for o in overrides])
    splits = load_splits(cfg.data, log=lambda m: None)
    tokenizer = make_tokenizer(cfg.data.tokenizer, [p + c for rows in splits.values() for p, c in rows])
    batch = encode_examples(tokenizer, splits["train"])
    cfg.model.vocab_size, cfg.model.block_size = tokenizer.vocab_size, batch["idx"].size(1)
    return cfg, batch


class Variant:
    """One way of running the training step, with its own model, optimizer and batch order."""

    def __init__(self, cfg, batch, bf16, answer_only, attention, steps, seed=0):
        torch.manual_seed(seed)
        self.train_cfg = cfg.train
        model = GPT(dataclasses.replace(cfg.model, attention=attention))
        self.state = TrainState(model, self.train_cfg, batch["idx"].size(0), seed, "cpu")
        _, positions = batch_model_inputs(batch)
        self.positions = positions if answer_only else None
        self.autocast = forward_context("cpu", "bf16" if bf16 else "fp32")
        order = torch.Generator().manual_seed(seed)
        self.batches = [{k: v[i] for k, v in batch.items()} for i in
                        (torch.randint(0, batch["idx"].size(0), (cfg.train.batch_size,), generator=order)
                         for _ in range(steps))]
        self.losses, self.rates = [], []

    def run(self, timed=True):
        """One pass over the steps (train.py's own train_step, schedule and clipping included);
        the untimed first pass records the loss after every step."""
        start = time.perf_counter()
        for b in self.batches:
            loss = train_step(self.state, self.state.model, b, (None, self.positions), self.train_cfg, self.autocast)
            if not timed:
                self.losses.append(loss.item())
        if timed:
            self.rates.append(len(self.batches) / (time.perf_counter() - start))

    @property
    def rate(self):
        return statistics.median(self.rates)


# name, bf16, answer-only, model.attention
VARIANTS = [("baseline", False, False, "sdpa"), ("answer-only", False, True, "sdpa"), ("bf16", True, False, "sdpa"),
            ("bf16+answer", True, True, "sdpa"), ("bf16+answer+explicit", True, True, "explicit")]


def throughput(args):
    torch.set_num_threads(args.threads)
    peak32, peak16 = matmul_peak(torch.float32, args.peak_size), matmul_peak(torch.bfloat16, args.peak_size)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads; "
          f"measured matmul peak {peak32:.0f} GFLOP/s fp32, {peak16:.0f} GFLOP/s bf16")
    note = slow_bf16_note("cpu", "bf16")
    if note:  # the bf16 rows below then measure an emulation
        print(note)
    for config in args.throughput_configs:
        cfg, batch = setup(config, args.set)
        B, T = cfg.train.batch_size, batch["idx"].size(1)
        real = batch["attention_mask"].float().sum(1).mean().item()
        print(f"\n{config}: {cfg.data.tokenizer}-level tokens, {cfg.model.n_layer} layer(s), batch {B}, "
              f"{T} columns, {real:.1f} real tokens a row")
        variants = [Variant(cfg, batch, *flags, args.steps) for _, *flags in VARIANTS]
        for v in variants:
            v.run(timed=False)  # warm-up, and the loss curve
        # Round-robin repeats, so that a slow spell of a shared machine hits every variant alike.
        for _ in range(args.repeats):
            for v in variants:
                v.run()
        print(f"{'variant':21s} {'steps/s':>8s} {'x base':>7s} {'GFLOP/s':>8s} {'% peak':>7s} "
              f"{'loss@' + str(args.steps):>10s}")
        base = variants[0].rate
        for (name, bf16, *_), v in zip(VARIANTS, variants):
            gflops = step_flops(cfg.model, v.batches[0], v.positions) * v.rate / 1e9
            peak = peak16 if bf16 else peak32
            print(f"{name:21s} {v.rate:8.1f} {v.rate / base:6.2f}x {gflops:8.1f} {gflops / peak:6.1%} "
                  f"{v.losses[-1]:10.4f}")


def worker(args):
    """One process of the parallel-runs measurement: prints its steps/s as JSON."""
    torch.set_num_threads(args.threads)
    cfg, batch = setup(args.throughput_configs[0], args.set)
    variant = Variant(cfg, batch, True, True, "sdpa", args.steps)
    variant.run(timed=False)
    for _ in range(args.repeats):
        variant.run()
    print(json.dumps({"rate": variant.rate}))


def parallel(args):
    def launch(n_procs, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        command = [sys.executable, __file__, "--worker", "--threads", str(threads),
                   "--steps", str(args.steps), "--repeats", str(args.repeats),
                   *[part for override in args.set for part in ("--set", override)]]
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n_procs)]
        return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["rate"] for p in procs)

    cores = os.cpu_count() or 1
    layouts = [(1, cores), (cores, 1)]
    rates = {layout: [] for layout in layouts}
    for _ in range(1 if args.quick else 2):  # alternate, so that a slow spell hits both alike
        for layout in layouts:
            rates[layout].append(launch(*layout))
    print(f"\nparallel runs (bf16+answer), model-steps/s summed over processes on {cores} cores:")
    for (procs, threads), measured in rates.items():
        print(f"  {procs} process{'es' if procs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}: "
              f"{statistics.mean(measured):6.1f}")


def time_to_grok(config, seeds):
    """The config run as shipped (its own stop rule), 2 threads, per seed: the wall-clock of the
    whole command, the step it stopped at, and where train and val accuracy first reached 99%."""
    print(f"\ntime-to-grok, {config} as shipped (its own stop rule), 2 threads:")
    print(f"  {'seed':>4s} {'wall s':>7s} {'stopped at':>11s} {'train 99% at':>13s} {'val 99% at':>11s} {'final val':>10s}")
    walls, steps = [], []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            subprocess.run([sys.executable, "train.py", "--config", config, "--out", tmp, f"--seed={seed}",
                            "--overwrite", "--no-progress", "--train.threads=2"],
                           check=True, stderr=subprocess.DEVNULL)
            wall = time.time() - start
            records = read_metrics(tmp)
        walls.append(wall)
        train_99, val_99 = (first_step(records, f"{split}_acc", GROKKED) for split in ("train", "val"))
        steps.append(val_99 if val_99 is not None else math.inf)
        last = records[-1]
        print(f"  {seed:4d} {wall:7.1f} {last['step']:11d} {train_99!s:>13s} {val_99!s:>11s} {last['val_acc']:10.4f}")
    print(f"  median {statistics.median(walls):.1f} s, val 99% at step {statistics.median(steps):g}")


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps, no time-to-grok: a smoke test")
    parser.add_argument("--grok-only", action="store_true", help="only the time-to-grok runs (no throughput tables)")
    parser.add_argument("--threads", type=int_arg(1, 4096), default=min(2, os.cpu_count() or 1))
    parser.add_argument("--steps", type=int_arg(1), default=30, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int_arg(1), default=7)
    parser.add_argument("--throughput-configs", nargs="+", default=["configs/div97.yaml", "configs/warmup/add113_l2.yaml"],
                        help="configs whose data and model the throughput tables time (the first one: parallel runs)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a config override for every throughput config, repeatable: --set "
                             "data.pad_numbers=false times the warm-up rows unpadded, as before the configs padded them")
    parser.add_argument("--grok-configs", nargs="*", default=["configs/div97.yaml", "configs/div97_fast.yaml"])
    parser.add_argument("--seeds", type=int_arg(), nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--peak-size", type=int_arg(1, 16384), default=2048, help="matrix size for the matmul peak")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.peak_size = 3, 1, 512
    if args.worker:
        return worker(args)
    if not args.grok_only:
        throughput(args)
        parallel(args)
    if not args.quick:
        for config in args.grok_configs:
            time_to_grok(config, args.seeds)


if __name__ == "__main__":
    run_cli(main)
