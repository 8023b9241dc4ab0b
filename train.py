"""Train a model from a config: the one training loop of this repo.

    python train.py --config configs/div97.yaml
    python train.py --config configs/div97.yaml --seed=1 --train.lr=3e-3 --out runs/div97_s1
    python train.py --resume runs/div97          # continue a stopped run exactly

Overrides take the form --section.key=value (or --seed=N). A run directory (default
runs/<config name>) receives the resolved config, the command, versions, metrics.jsonl and
checkpoints/ (last.pt, plus step_1000.pt, step_10000.pt, ...).
"""

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from common import (UserError, batch_model_inputs, config_from_dict, config_to_dict, describe_keys,
                    dump_json, encode_examples, forward_context, grokking_summary, load_checkpoint, load_config,
                    make_tokenizer, parse_override, pick_device, read_metrics, rng_state, run_cli, save_checkpoint,
                    seed_everything, set_rng_state, set_value, slice_batch, tokenizer_from_state, validate)
from evaluate import evaluate_batch
from generate_data import load_splits
from model import GPT


def eval_steps(train_cfg):
    """The steps after which to evaluate: 0, then a geometric or a fixed grid, then the last."""
    last = train_cfg.max_steps
    if train_cfg.eval_schedule == "fixed":
        steps = set(range(0, last + 1, train_cfg.eval_interval))
    else:
        per = train_cfg.eval_per_decade
        steps = {round(10 ** (k / per)) for k in range(int(per * math.log10(last)) + 1)}
        steps.add(0)
    steps.add(last)
    return steps


def lr_at(step, cfg):
    """Linear warmup over warmup_steps updates, then constant or cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model, cfg):
    """Adam or AdamW; decay either every parameter or only 2-D weights (not biases, norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay == "matrices":
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


class Grokfast:
    """Grokfast-EMA (Lee et al. 2024, Algorithm 2): g <- g + lambda * EMA_alpha(g).

    Applied between backward() and the optimizer step; amplifies the slow gradient component.
    """

    def __init__(self, model, alpha, lamb):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.alpha, self.lamb = alpha, lamb
        self.ema = None

    @torch.no_grad()
    def apply(self):
        grads = [p.grad for p in self.params]
        if self.ema is None:  # the paper starts the average at the first gradient
            self.ema = [g.detach().clone() for g in grads]
        else:
            torch._foreach_lerp_(self.ema, grads, 1 - self.alpha)
        torch._foreach_add_(grads, self.ema, alpha=self.lamb)

    def state_dict(self):
        return {"ema": self.ema}

    def load_state_dict(self, state):
        self.ema = state["ema"]


class BatchOrder:
    """Shuffled epochs of a training set of n examples, drawn with a generator of their own.

    Incomplete last batches are dropped; a batch larger than n becomes the whole set.
    """

    def __init__(self, n, batch_size, seed, device):
        self.n, self.batch_size, self.device = n, min(batch_size, n), device
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = None, n

    def next(self):
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        index = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return index

    def state_dict(self):
        return {"generator": self.generator.get_state(), "perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)
        self.pos = state["pos"]


class Distributed:
    """Data parallelism under torchrun (RANK, LOCAL_RANK, WORLD_SIZE from the environment).

    Every rank draws the same global batch and trains on its own slice of it; DDP averages the
    gradients, so batch size and learning rate mean what they mean in a single process. Only
    rank 0 evaluates, logs and writes checkpoints.
    """

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self.device = device
        if self.world > 1:
            if device == "cuda":
                self.device = f"cuda:{self.local_rank}"
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if device == "cuda" else "gloo")

    def my_share(self, index):
        return index if self.world == 1 else index.view(self.world, -1)[self.rank]

    def any(self, flag):
        """True on every rank if flag is True on any rank."""
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def close(self):
        if self.world > 1:
            dist.destroy_process_group()


def describe_environment(device):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"git_commit": commit, "git_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "device": device,
            "threads": torch.get_num_threads()}


def check_run_dir(out, resume, overwrite):
    """Refuse to start over a run directory that holds a run, unless told to."""
    holds_run = (out / "metrics.jsonl").exists() or (out / "checkpoints").exists()
    if not resume and holds_run and not overwrite:
        raise UserError(f"run directory '{out}' already holds a run; use --resume {out} to continue it, "
                        "--overwrite to start it again, or --out to pick another directory")


def prepare_run_dir(out, resume):
    if not resume and out.exists():
        shutil.rmtree(out)  # only reached with --overwrite, or for a folder without a run
    out.mkdir(parents=True, exist_ok=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys, with their defaults (set in YAML or as --key=value):\n" + describe_keys())
    parser.add_argument("--config", help="YAML config file (configs/*.yaml)")
    parser.add_argument("--out", help="run directory (default runs/<name>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and sweeps)")
    args, overrides = parser.parse_known_args(argv)
    if not args.config and not args.resume:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    return args, overrides


def train(args, overrides):
    resume_ckpt = None
    if args.resume:
        resume_ckpt = load_checkpoint(args.resume)
        cfg = config_from_dict(resume_ckpt["config"])
        for text in overrides:  # e.g. a longer --train.max_steps
            set_value(cfg, *parse_override(text))
        validate(cfg)
        out = Path(args.resume)
    else:
        cfg = load_config(args.config, overrides)
        out = Path(args.out or cfg.out_dir or Path("runs") / cfg.name)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ddp = Distributed(pick_device(tc.device))
    device = ddp.device
    if tc.batch_size % ddp.world:
        raise UserError(f"train.batch_size {tc.batch_size} must be divisible by the {ddp.world} processes")
    log = (lambda message: print(message, file=sys.stderr)) if ddp.is_main else (lambda message: None)
    check_run_dir(out, args.resume, args.overwrite)
    # Rank 0 generates the data set if it is missing; bad data settings fail before anything
    # is written to the run directory.
    splits = load_splits(cfg.data, log) if ddp.is_main else None
    ddp.barrier()  # every rank has checked the run directory and can read the data now
    if not ddp.is_main:
        splits = load_splits(cfg.data, log)
    else:
        prepare_run_dir(out, args.resume)
    ddp.barrier()
    seed_everything(cfg.seed)

    # Tokenizer from every split (so val/test hold no unknown symbol); tensors on the device.
    if resume_ckpt is not None:
        tokenizer = tokenizer_from_state(resume_ckpt["tokenizer"])
    else:
        texts = [p + c for rows in splits.values() for p, c in rows]
        tokenizer = make_tokenizer(cfg.data.tokenizer, texts)
    batches = {name: {k: v.to(device) for k, v in encode_examples(tokenizer, rows, cfg.data.mask_first).items()}
               for name, rows in splits.items() if rows}
    cfg.model.vocab_size = tokenizer.vocab_size
    cfg.model.block_size = max(b["idx"].size(1) for b in batches.values())

    model = GPT(cfg.model).to(device)
    optimizer = make_optimizer(model, tc)
    grokfast = Grokfast(model, tc.grokfast_alpha, tc.grokfast_lambda) if tc.grokfast_lambda > 0 else None
    order = BatchOrder(batches["train"]["idx"].size(0), tc.batch_size, cfg.seed, device)
    step = 0
    if resume_ckpt is not None:
        try:
            model.load_state_dict(resume_ckpt["model"])
            optimizer.load_state_dict(resume_ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"checkpoint in '{out}' does not match the requested model (drop the model "
                            f"overrides to resume it): {str(e).splitlines()[0][:160]}")
        order.load_state_dict(resume_ckpt["batch_order"])
        if grokfast is not None and resume_ckpt.get("grokfast"):
            grokfast.load_state_dict(resume_ckpt["grokfast"])
        set_rng_state(resume_ckpt["rng"])
        step = resume_ckpt["step"]
        log(f"resuming {out} from step {step}")
        if ddp.is_main:
            _truncate_metrics(out / "metrics.jsonl", step)
            (out / "summary.json").unlink(missing_ok=True)
    elif ddp.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        (out / "command.txt").write_text(" ".join(sys.argv) + "\n")
        dump_json(out / "env.json", describe_environment(device))
    compiled = torch.compile(model) if tc.compile else model
    trained = DistributedDataParallel(compiled) if ddp.world > 1 else compiled
    model_context = forward_context(device, tc.precision, tc.attention_kernel)
    log(f"{model.num_params() / 1e6:.3f}M non-embedding parameters, vocab {cfg.model.vocab_size}, "
        f"block {cfg.model.block_size}, device {device}, train {order.n} examples, batch {order.batch_size}")

    def checkpoint(path):
        if not ddp.is_main:
            return
        save_checkpoint(path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "config": config_to_dict(cfg), "tokenizer": tokenizer.state(), "rng": rng_state(),
            "batch_order": order.state_dict(), "grokfast": grokfast.state_dict() if grokfast else None,
            "data": _data_identity(cfg),
        })

    stop_signal = []
    handlers = {s: signal.signal(s, lambda signum, frame: stop_signal.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    evals = eval_steps(tc)
    train_batch = batches["train"]
    # Fixed-length data takes the fast paths: no attention mask, outputs only where the loss is.
    attention_mask, positions = batch_model_inputs(train_batch)
    hits = _trailing_hits(out / "metrics.jsonl", tc.stop_val_acc)
    resumed_at = step if resume_ckpt is not None else None
    start_time = time.time()
    progress = _progress(tc.max_steps, step, args.no_progress or not ddp.is_main)
    metrics_file = open(out / "metrics.jsonl", "a") if ddp.is_main else None
    try:
        while True:
            # A checkpoint at step s is written after the evaluation at s, so resuming from it
            # neither repeats nor skips a record.
            if step != resumed_at and ddp.is_main:
                if step in evals:
                    record = {"step": step, "lr": lr_at(max(step - 1, 0), tc)}
                    for name in [n for n in tc.eval_splits if n in batches]:
                        numbers = evaluate_batch(compiled, batches[name], tc.eval_batch_size, model_context)
                        record[f"{name}_loss"], record[f"{name}_acc"] = numbers["loss"], numbers["acc"]
                    with torch.no_grad():
                        record["weight_norm"] = math.sqrt(sum(float(p.float().pow(2).sum()) for p in model.parameters()))
                    record["elapsed"] = round(time.time() - start_time, 3)
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    progress.set_postfix_str(" ".join(
                        f"{k} {record[k]:.3g}" for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in record))
                    hits = hits + 1 if record.get("val_acc", 0.0) >= tc.stop_val_acc else 0
            if ddp.any(tc.stop_patience and hits >= tc.stop_patience):
                log(f"stopping at step {step}: val accuracy >= {tc.stop_val_acc} for {hits} evaluations")
                break
            if step >= tc.max_steps:
                break
            if step != resumed_at:
                if step > 0 and step % tc.checkpoint_interval == 0:
                    checkpoint(out / "checkpoints" / "last.pt")
                if tc.log_checkpoints and step >= 1000 and math.log10(step).is_integer():
                    checkpoint(out / "checkpoints" / f"step_{step}.pt")
            if ddp.any(stop_signal):
                checkpoint(out / "checkpoints" / "last.pt")
                log(f"interrupted at step {step}; checkpoint saved. Continue with: python train.py --resume {out}")
                raise SystemExit(130)

            index = ddp.my_share(order.next())
            batch = slice_batch(train_batch, index)
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with model_context():
                _, loss = trained(batch["idx"], batch["targets"], batch["loss_mask"],
                                   None if attention_mask is None else batch["attention_mask"], positions)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            if grokfast is not None:
                grokfast.apply()
            optimizer.step()
            step += 1
            progress.update(1)
    finally:
        progress.close()
        if metrics_file:
            metrics_file.close()
        for s, h in handlers.items():
            signal.signal(s, h)
        ddp.close()
    checkpoint(out / "checkpoints" / "last.pt")
    seconds = time.time() - start_time
    if ddp.is_main:
        # summary.json marks a finished run (sweep.py skips those) and holds its grokking numbers.
        heldout = "test" if "test" in tc.eval_splits else "val"
        dump_json(out / "summary.json", {"step": step, "seconds": round(seconds, 1),
                                         **grokking_summary(read_metrics(out), heldout)})
    log(f"done: {out} (step {step}, {seconds:.1f}s)")
    return out


def _data_identity(cfg):
    d = cfg.data
    if d.kind == "text":
        return {"kind": "text", "text": d.text}
    return {"kind": "modular", "op": d.op, "p": d.p, "train_frac": d.train_frac,
            "val_frac": d.val_frac, "data_seed": d.data_seed}


def _truncate_metrics(path, step):
    """Drop records written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    lines = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
    path.write_text("".join(l + "\n" for l in lines))


def _trailing_hits(path, threshold):
    """How many of the last records in a metrics log have val accuracy at the threshold."""
    hits = 0
    if path.exists():
        for line in path.read_text().splitlines():
            hits = hits + 1 if json.loads(line).get("val_acc", 0.0) >= threshold else 0
    return hits


def _progress(total, initial, disabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=disabled, unit="step", dynamic_ncols=True, file=sys.stderr)


def main(argv=None):
    args, overrides = parse_args(argv)
    train(args, overrides)


if __name__ == "__main__":
    run_cli(main)
