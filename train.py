"""Train a model from a config: the one training loop of this repo.

    python train.py --config configs/div97.yaml
    python train.py --config configs/div97.yaml --seed=1 --train.lr=3e-3 --out runs/div97_s1
    python train.py --resume runs/div97          # continue a stopped run exactly

Overrides take the form --section.key=value (or --seed=N). A run directory (default
runs/<config name>) receives the resolved config, the command, versions, metrics.jsonl and
checkpoints/ (last.pt, plus step_1000.pt, step_10000.pt, ...). A resume appends its command and
the keys it changed to resumes.jsonl. One process at a time may use a run directory.
"""

import argparse
import fcntl
import gc
import hashlib
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

from checkpoint import check_same_data, load_checkpoint, save_checkpoint
from config import apply_override, config_from_dict, config_to_dict, describe_keys, load_config, validate
from levers import lr_at
from metrics import evaluation_record
from model import GPT
from progress import Task
from runlog import UserError, dump_json, read_metrics, grokking_summary, run_cli
from runtime import cpu_identity, forward_context, pick_device, seed_everything, slow_bf16_note
from tasks import data_identity, load_splits
from tokens import batch_model_inputs, encode_examples, make_tokenizer, slice_batch, tokenizer_from_state
from training import TrainState, eval_steps, train_step


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
            # The DistributedDataParallel wrapper sits in a reference cycle, so without a collection
            # it lives until interpreter shutdown, and freeing its gloo state there sometimes aborted
            # the process ("terminate called without an active exception": 6 of 40 two-process runs
            # of a bare DDP loop on torch 2.13 CPU, 0 of 40 with this collection).
            gc.collect()
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- run directory


def describe_environment(device):
    """Code version (commit, whether the tree had changes and a hash of them) and versions."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout

    try:
        commit, diff = git("rev-parse", "HEAD").strip(), git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        commit, diff = "", ""
    return {"git_commit": commit, "git_dirty": bool(diff), "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()
            if diff else None, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), **cpu_identity(), "device": device,
            "threads": torch.get_num_threads()}


class RunDirectory:
    """A run directory held by one process: the lock is taken before anything is written."""

    def __init__(self, out, resume, overwrite):
        self.out, self.resume, self.overwrite, self.fd = Path(out), resume, overwrite, None
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out '{self.out}' is a file, not a directory; pick another --out")
        self.check()

    def holds_run(self):
        return (self.out / "metrics.jsonl").exists() or (self.out / "checkpoints").exists()

    def check(self):
        """Refuse to start over a run directory that holds a run, unless told to, and never start
        in a folder that holds anything else (--overwrite deletes only a run directory)."""
        holds_run = self.holds_run()
        if not self.resume and holds_run and not self.overwrite:
            raise UserError(f"run directory '{self.out}' already holds a run; use --resume {self.out} to continue "
                            "it, --overwrite to delete it and start again, or --out to pick another directory")
        if not self.resume and not holds_run and self.out.is_dir() and any(self.out.iterdir()):
            raise UserError(f"--out '{self.out}' is a folder that holds files but no run; pick a new or empty "
                            "folder for the run directory")

    def acquire(self):
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.out, os.O_RDONLY)
        except OSError as e:
            raise UserError(f"cannot create run directory '{self.out}' ({e.strerror}); pick a writable --out")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run directory '{self.out}' is in use by another train.py; wait for it to end "
                            "or pick another --out")
        self.check()  # the other process may have finished a run here while we waited
        if not self.resume and self.overwrite and self.holds_run():
            for child in self.out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def record_start(out, cfg, args, changed, device):
    """config.yaml, command.txt and env.json for a new run; for a resume, a line in resumes.jsonl."""
    command = " ".join(sys.argv)
    if not args.resume:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        (out / "command.txt").write_text(command + "\n")
        dump_json(out / "env.json", describe_environment(device))
        return
    (out / "summary.json").unlink(missing_ok=True)  # the run is not finished any more
    with open(out / "resumes.jsonl", "a") as f:
        f.write(json.dumps({"command": command, "changed": changed, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            **describe_environment(device)}) + "\n")


def resolve_run(args, overrides):
    """(config, run directory, checkpoint to resume or None, {key: [old, new]} a resume changes)."""
    if not args.resume:
        cfg = load_config(args.config, overrides)
        return cfg, Path(args.out or cfg.out_dir or Path("runs") / cfg.name), None, {}
    ckpt = load_checkpoint(args.resume)
    cfg = config_from_dict(ckpt["config"])
    before = _flat(config_to_dict(cfg))
    for text in overrides:  # e.g. a longer --train.max_steps
        apply_override(cfg, text)
    validate(cfg)
    check_same_data(ckpt, cfg.data, args.resume)
    after = _flat(config_to_dict(cfg))
    changed = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
    return cfg, Path(args.resume), ckpt, changed


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


# ----------------------------------------------------------------------------- evaluation


class Evaluations:
    """When to evaluate, on how much, and the stop rule; writes metrics.jsonl (rank 0 only)."""

    def __init__(self, tc, out, resumed_at, task=None):
        self.tc, self.path, self.steps, self.task = tc, out / "metrics.jsonl", eval_steps(tc), task
        self.last_full, self.hits, self.seconds = -math.inf, 0, 0.0
        if resumed_at is not None:
            _truncate_metrics(self.path, resumed_at)
            for r in read_metrics(out) if self.path.exists() else []:
                if "subset" not in r:
                    self.last_full, self.hits = r["step"], self._hit(r)
        self.file = open(self.path, "a")

    def _hit(self, record):
        return self.hits + 1 if record.get("val_acc", 0.0) >= self.tc.stop_val_acc else 0

    def run(self, state, model, batches, context, elapsed):
        """Evaluate at this step if it is on the grid; returns the record or None."""
        step, tc = state.step, self.tc
        if step not in self.steps:
            return None
        start = time.time()
        smallest = min(b["idx"].size(0) for b in batches.values())  # a subset that big is the whole split
        full = not tc.eval_subset or tc.eval_subset >= smallest or step - self.last_full >= tc.eval_full_gap \
            or step == tc.max_steps
        record = {"step": step, "lr": lr_at(max(step - 1, 0), tc, state.memorised_at),
                  **evaluation_record(model, batches, tc, context, 0 if full else tc.eval_subset, self.task)}
        record["elapsed"] = round(elapsed(), 3)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if full:
            self.last_full, self.hits = step, self._hit(record)
            if state.memorised_at is None and record.get("train_acc", 0.0) >= tc.drop_train_acc:
                state.memorised_at = step
        self.seconds += time.time() - start
        return record

    def should_stop(self):
        return bool(self.tc.stop_patience) and self.hits >= self.tc.stop_patience

    def close(self):
        self.file.close()


def _truncate_metrics(path, step):
    """Drop records written after the checkpoint we resume from (they will be redone)."""
    if path.exists():
        lines = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
        path.write_text("".join(l + "\n" for l in lines))


# ----------------------------------------------------------------------------- the run


def build_run(cfg, splits, resume_ckpt, device):
    """Tokenizer, batches on the device, and the TrainState (restored when resuming)."""
    if resume_ckpt is not None:
        tokenizer = tokenizer_from_state(resume_ckpt["tokenizer"])
    else:  # from every split, so that val and test hold no unknown symbol
        tokenizer = make_tokenizer(cfg.data.tokenizer, [p + c for rows in splits.values() for p, c in rows])
    batches = {name: {k: v.to(device) for k, v in encode_examples(tokenizer, rows, cfg.data.mask_first).items()}
               for name, rows in splits.items() if rows}
    cfg.model.vocab_size = tokenizer.vocab_size
    cfg.model.block_size = max(b["idx"].size(1) for b in batches.values())
    state = TrainState(GPT(cfg.model).to(device), cfg.train, batches["train"]["idx"].size(0), cfg.seed, device)
    if resume_ckpt is not None:
        try:
            state.load_state_dict(resume_ckpt)
        except ValueError as e:
            raise UserError(f"the checkpoint does not match the requested run (drop the model or optimizer "
                            f"overrides to resume it): {e}")
    return tokenizer, batches, state


def train(args, overrides):
    cfg, out, resume_ckpt, changed = resolve_run(args, overrides)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ddp = Distributed(pick_device(tc.device))
    if tc.batch_size % ddp.world:
        raise UserError(f"train.batch_size {tc.batch_size} must be divisible by the {ddp.world} processes")
    log = (lambda message: print(message, file=sys.stderr)) if ddp.is_main else (lambda message: None)
    run_dir = RunDirectory(out, args.resume, args.overwrite)
    # Bad data settings fail before anything is written; rank 0 generates a missing data set.
    splits = load_splits(cfg.data, log) if ddp.is_main else None
    ddp.barrier()
    if not ddp.is_main:
        splits = load_splits(cfg.data, log)
    else:
        run_dir.acquire()
    ddp.barrier()
    seed_everything(cfg.seed)
    tokenizer, batches, state = build_run(cfg, splits, resume_ckpt, ddp.device)
    if ddp.is_main:
        record_start(out, cfg, args, changed, ddp.device)
    log(f"{state.model.num_params() / 1e6:.3f}M non-embedding parameters, vocab {cfg.model.vocab_size}, block "
        f"{cfg.model.block_size}, device {ddp.device}, train {state.order.n} examples, batch {state.order.batch_size}"
        + (f"; resuming {out} from step {state.step}" if resume_ckpt else ""))
    # what metrics.TASK_METRICS read beside the model
    task = Task(cfg.data, tokenizer, batches["train"], forward_context(ddp.device, tc.precision))
    for note in (task.note(), slow_bf16_note(ddp.device, tc.precision)):
        if note:
            log(note)
    try:
        seconds, eval_seconds = run_loop(cfg, out, args, ddp, state, batches, tokenizer, task, resume_ckpt is not None, log)
        if ddp.is_main:
            # summary.json marks a finished run (sweep.py skips those) and holds its grokking numbers.
            dump_json(out / "summary.json", {"step": state.step, "seconds": round(seconds, 1), "eval_seconds":
                                             round(eval_seconds, 1), **grokking_summary(read_metrics(out))})
    finally:
        run_dir.release()
        ddp.close()
    log(f"done: {out} (step {state.step}, {seconds:.1f}s, {eval_seconds / max(seconds, 1e-9):.0%} of it evaluating)")
    log(what_next(cfg, out, splits))
    return out


def what_next(cfg, out, splits):
    """Where the run's results are and the commands that use them, printed at the end of a run."""
    records = read_metrics(out, allow_empty=True)
    lines = []
    if records and cfg.data.kind == "modular":
        s = grokking_summary(records, "val")
        at = lambda step: "never" if step is None else f"step {step}"
        verdict = (f"grokked and held from step {s['grokked_at']}" if s["grokked"]
                   else "not grokked (val accuracy did not reach 99% and hold)")
        lines.append(f"train accuracy 99%: {at(s['train_99'])}; val accuracy 99%: {at(s['val_99'])}; {verdict}")
    prompt = splits["val"][0][0] if cfg.data.kind == "modular" and splits.get("val") else None
    lines += [f"checkpoint: {out / 'checkpoints' / 'last.pt'}   log: {out / 'metrics.jsonl'}", "next:",
              f"  python inference.py --checkpoint {out}" + (f" --prompt '{prompt}'" if prompt else ""),
              f"  python evaluate.py --checkpoint {out}" + (" --all-pairs" if cfg.data.kind == "modular" else ""),
              f"  python plot.py {out} --out {out / 'curves.png'}"]
    return "\n".join(lines)


def run_loop(cfg, out, args, ddp, state, batches, tokenizer, task, resumed, log):
    """Evaluate on the grid, checkpoint, step; until max_steps, the stop rule or a signal.

    A checkpoint at step s is written after the evaluation at s, so resuming from it neither
    repeats nor skips a record. Returns (seconds, seconds spent evaluating).
    """
    tc = cfg.train
    resumed_at = state.step if resumed else None
    model = torch.compile(state.model) if tc.compile else state.model
    trained = DistributedDataParallel(model) if ddp.world > 1 else model
    context = forward_context(ddp.device, tc.precision)
    inputs = batch_model_inputs(batches["train"])  # fixed-length data: no mask, outputs only at the answer
    evals = Evaluations(tc, out, resumed_at, task) if ddp.is_main else None
    grid = eval_steps(tc)
    stop_signal, start = [], time.time()
    handlers = {s: signal.signal(s, lambda signum, frame: stop_signal.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    progress = _progress(tc.max_steps, state.step, args.no_progress or not ddp.is_main)

    def checkpoint(name):
        if ddp.is_main:
            save_checkpoint(out / "checkpoints" / name, {**state.state_dict(), "config": config_to_dict(cfg),
                                                         "tokenizer": tokenizer.state(), "data": data_identity(cfg.data)})
    try:
        while True:
            if state.step != resumed_at and evals is not None:
                record = evals.run(state, model, batches, context, lambda: time.time() - start)
                if record is not None:
                    progress.set_postfix_str(" ".join(f"{k} {record[k]:.3g}" for k in
                                                      ("train_loss", "train_acc", "val_loss", "val_acc") if k in record))
            if ddp.world > 1 and state.step in grid:  # every rank's schedule must see the memorisation
                if ddp.any(state.memorised_at is not None) and state.memorised_at is None:
                    state.memorised_at = state.step
            if ddp.any(evals is not None and evals.should_stop()):
                log(f"stopping at step {state.step}: val accuracy >= {tc.stop_val_acc} for {tc.stop_patience} evaluations")
                break
            if state.step >= tc.max_steps:
                break
            if state.step != resumed_at:
                for name in _checkpoints_due(state.step, tc):
                    checkpoint(name)
            if ddp.any(stop_signal):
                checkpoint("last.pt")
                elapsed = time.time() - start
                share = f", {evals.seconds / max(elapsed, 1e-9):.0%} of it evaluating" if evals is not None else ""
                log(f"interrupted at step {state.step} after {elapsed:.1f}s{share}; checkpoint saved. "
                    f"Continue with: python train.py --resume {out}")
                raise SystemExit(130)
            batch = slice_batch(batches["train"], ddp.my_share(state.order.next()))
            train_step(state, trained, batch, inputs, tc, context)
            progress.update(1)
    finally:
        trained = None  # an exception's traceback would keep the DDP wrapper alive past Distributed.close
        progress.close()
        if evals is not None:
            evals.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    checkpoint("last.pt")
    return time.time() - start, evals.seconds if evals is not None else 0.0


def _checkpoints_due(step, tc):
    """last.pt every checkpoint_interval steps; step_1000.pt, step_10000.pt, ... if log_checkpoints."""
    due = ["last.pt"] if step > 0 and step % tc.checkpoint_interval == 0 else []
    if tc.log_checkpoints and step >= 1000 and math.log10(step).is_integer():
        due.append(f"step_{step}.pt")
    return due


def _progress(total, initial, disabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=disabled, unit="step", dynamic_ncols=True, file=sys.stderr)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys, with their defaults (set in YAML or as --key=value):\n" + describe_keys())
    parser.add_argument("--config", help="YAML config file (configs/*.yaml)")
    parser.add_argument("--out", help="run directory (default runs/<name>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="delete the run in the run directory and start again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and sweeps)")
    args, overrides = parser.parse_known_args(argv)
    if not args.config and not args.resume:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    if args.config and args.resume:
        parser.error("give --config FILE to start a run or --resume RUN_DIR to continue one, not both")
    return args, overrides


def main(argv=None):
    args, overrides = parse_args(argv)
    train(args, overrides)


if __name__ == "__main__":
    run_cli(main)
