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
from config import apply_overrides, config_from_dict, config_to_dict, describe_keys, load_config, validate
from levers import lr_at
from metrics import evaluation_record
from model import GPT
from progress import Task
from runlog import (ArgumentParser, UserError, WriteError, cannot_write, check_output_folder, dump_json,
                    grokking_summary, read_metrics, refuse_foreign_folder, run_cli, write_text)
from runtime import cpu_identity, forward_context, pick_device, seed_everything, slow_bf16_note
from tasks import data_identity, dataset_dir, load_splits
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


# What a run writes before its first evaluation and checkpoint. A folder holding only these (or
# their temp files, an empty log, an empty checkpoints/) is a run that never got going: killed while
# it started, or stopped by its very first write. A new run may take such a folder over.
START_FILES = {"config.yaml", "command.txt", "env.json", "metrics.jsonl", "checkpoints"}


class RunDirectory:
    """A run directory held by one process: the lock is taken before anything is written."""

    def __init__(self, out, resume, overwrite):
        self.out, self.resume, self.overwrite, self.fd, self.made = Path(out), resume, overwrite, None, False
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out '{self.out}' is a file, not a directory; pick another --out")
        if not self.out.exists():
            check_output_folder(self.out, "--out")
        self.check()

    def holds_run(self):
        log, checkpoints = self.out / "metrics.jsonl", self.out / "checkpoints"
        return (log.exists() and log.stat().st_size > 0) or (checkpoints.is_dir() and any(checkpoints.iterdir()))

    def never_started(self):
        """True for a folder holding only what a run writes as it starts (START_FILES), or nothing.
        command.txt, a run's first file, must be among them: a folder holding only a config.yaml of
        the user's is not taken over."""
        children = list(self.out.iterdir()) if self.out.is_dir() else []
        return self.out.is_dir() and not self.holds_run() and (
            not children or (self.out / "command.txt").is_file()) and all(
            child.name.removesuffix(".tmp") in START_FILES for child in children)

    def check(self):
        """Refuse to start over a run directory that holds a run, unless told to, and never start
        in a folder that holds anything else (--overwrite deletes only a run directory)."""
        holds_run = self.holds_run()
        if not self.resume and holds_run and not self.overwrite:
            raise UserError(f"run directory '{self.out}' already holds a run; use --resume {self.out} to continue "
                            "it, --overwrite to delete it and start again, or --out to pick another directory")
        if not self.resume and not holds_run and self.out.is_dir() and not self.never_started():
            raise UserError(f"--out '{self.out}' is a folder that holds files but no run; pick a new or empty "
                            "folder for the run directory")

    def acquire(self):
        try:
            self.made = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.out, os.O_RDONLY)
        except OSError as e:
            raise UserError(f"cannot create run directory '{self.out}' ({e.strerror}); pick a writable --out")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise UserError(f"run directory '{self.out}' is in use by another train.py; wait for it to end "
                            "or pick another --out")
        self.check()  # the other process may have finished a run here while we waited
        if not self.resume and (self.overwrite and self.holds_run() or self.never_started()):
            for child in self.out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def release(self):
        """Unlock; a folder this run made and left empty (its first write failed) goes too."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            if self.made and not any(self.out.iterdir()):
                self.out.rmdir()


def how_to_go_on(out, run_dir):
    if (out / "checkpoints" / "last.pt").exists():
        return f"continue with: python train.py --resume {out}"
    return "start it again with --overwrite (it has no checkpoint yet)" if run_dir.holds_run() else \
        "run the same command again"


def record_start(out, cfg, args, changed, device, step):
    """config.yaml, command.txt and env.json for a new run. A resume (from step) first checks that
    it has something to do and cuts the log back to step (a damaged log stops it there, before
    anything is touched), then adds a line to resumes.jsonl. Each file is written whole
    (runlog.write_text); the environment is read before any is written."""
    if args.resume and (out / "summary.json").exists():
        _refuse_resume_that_trains_nothing(cfg.train, out, step)
    if args.resume:
        truncate_metrics(out / "metrics.jsonl", step)
    command, environment = " ".join(sys.argv), describe_environment(device)
    if not args.resume:
        write_text(out / "command.txt", command + "\n")  # first: it marks the folder as a run's (never_started)
        write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        dump_json(out / "env.json", environment)
        return
    resumes = out / "resumes.jsonl"
    line = json.dumps({"command": command, "changed": changed, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       **environment}) + "\n"
    write_text(resumes, (resumes.read_text() if resumes.exists() else "") + line)
    (out / "summary.json").unlink(missing_ok=True)  # the run is not finished any more


# Keys a resume cannot change: the random state comes from the checkpoint, and the run stays where it is.
FIXED_ON_RESUME = {"seed": "the run's random state comes from its checkpoint",
                   "name": "a run keeps its name", "out_dir": "a run continues in its own folder"}


def resolve_run(args, overrides):
    """(config, run directory, checkpoint to resume or None, {key: [old, new]} a resume changes)."""
    if not args.resume:
        cfg = load_config(args.config, overrides)
        return cfg, Path(args.out or cfg.out_dir or Path("runs") / cfg.name), None, {}
    out = Path(args.resume)
    if not out.is_dir():
        raise UserError(f"--resume takes a run directory (runs/NAME), and '{out}' is "
                        f"{'a file' if out.exists() else 'not there'}")
    if not (out / "checkpoints" / "last.pt").is_file() and (out / "config.yaml").is_file():
        raise UserError(f"run directory '{out}' has no checkpoint to resume: it stopped before its first one. "
                        f"Start it again with its command and --overwrite (see {out / 'command.txt'})")
    ckpt = load_checkpoint(out)
    cfg = config_from_dict(ckpt["config"])
    before = _flat(config_to_dict(cfg))
    apply_overrides(cfg, overrides)  # e.g. a longer --train.max_steps
    validate(cfg)
    check_same_data(ckpt, cfg.data, out)
    after = _flat(config_to_dict(cfg))
    changed = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
    for key, why in FIXED_ON_RESUME.items():
        if key in changed:
            raise UserError(f"--{key} cannot change on a resume ({why}); start a new run with --config and --out")
    step = ckpt.get("step", 0)
    if cfg.train.max_steps < step:
        raise UserError(f"the run in '{out}' is at step {step}; a resume cannot go back to "
                        f"train.max_steps={cfg.train.max_steps}: give {step} or more")
    return cfg, out, ckpt, changed


def _refuse_resume_that_trains_nothing(tc, out, step):
    """A finished run resumed with nothing to train would only be marked unfinished and finished
    again: say why nothing would happen and what would make it train."""
    if tc.max_steps == step:
        raise UserError(f"the run in '{out}' already finished at step {step} (train.max_steps); "
                        f"raise --train.max_steps to train on")
    hits = stop_rule_hits(read_metrics(out, allow_empty=True), tc, step)
    if tc.stop_patience and hits >= tc.stop_patience:
        raise UserError(f"the run in '{out}' ended by its stop rule at step {step} (val accuracy >= {tc.stop_val_acc} "
                        f"for {hits} evaluations in a row), which would stop it again at once; add "
                        f"--train.stop_patience=0 to train on to train.max_steps={tc.max_steps}, or a larger "
                        "--train.stop_patience")


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


# ----------------------------------------------------------------------------- evaluation


def stop_rule_hits(records, tc, step=None):
    """Full evaluations in a row, up to step, that met the stop rule's val accuracy."""
    hits = 0
    for r in records:
        if "subset" not in r and (step is None or r["step"] <= step):
            hits = hits + 1 if r.get("val_acc", 0.0) >= tc.stop_val_acc else 0
    return hits


class Evaluations:
    """When to evaluate, on how much, and the stop rule; writes metrics.jsonl (rank 0 only).
    On a resume the log has been cut back to the checkpoint's step (truncate_metrics)."""

    def __init__(self, tc, out, resumed_at, task=None):
        self.tc, self.path, self.steps, self.task = tc, out / "metrics.jsonl", eval_steps(tc), task
        self.last_full, self.hits, self.seconds = -math.inf, 0, 0.0
        if resumed_at is not None and self.path.exists():
            records = [r for r in read_metrics(out, allow_empty=True) if "subset" not in r]
            self.hits = stop_rule_hits(records, tc)
            self.last_full = records[-1]["step"] if records else -math.inf
        try:
            self.file = open(self.path, "a")
        except OSError as e:
            raise cannot_write(self.path, e) from None

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
        try:  # a line cut short here (a full disk, a kill) is dropped by readers and by a resume
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise cannot_write(self.path, e) from None
        if full:
            self.last_full, self.hits = step, self._hit(record)
            if state.memorised_at is None and record.get("train_acc", 0.0) >= tc.drop_train_acc:
                state.memorised_at = step
        self.seconds += time.time() - start
        return record

    def should_stop(self):
        return bool(self.tc.stop_patience) and self.hits >= self.tc.stop_patience

    def close(self):
        try:
            self.file.close()
        except OSError:  # the write that failed has raised already; its buffer cannot be written either
            pass


def truncate_metrics(path, step):
    """Drop the records written after the checkpoint we resume from (they will be redone) and a
    last line cut short by a crash, in one atomic rewrite: a kill leaves the old log or the new."""
    if not path.exists():
        return
    text = path.read_text()
    lines, keep = text.splitlines(), []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the line being written when the run died
                break
            raise UserError(f"'{path}' line {number} is not JSON; the log was edited or damaged")
        if record["step"] <= step:
            keep.append(line)
    new = "".join(line + "\n" for line in keep)
    if new != text:
        write_text(path, new)


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
    data_dir = dataset_dir(cfg.data) if cfg.data.kind == "modular" else None
    if data_dir is not None and not (data_dir / "meta.json").exists():
        refuse_foreign_folder(data_dir, "meta.json", "data folder")
    # Bad data settings fail before anything is written; rank 0 generates a missing data set.
    if ddp.is_main:
        splits = load_splits(cfg.data, log)  # a new data set appears whole or not at all (tasks.write_dataset)
    ddp.barrier()
    if not ddp.is_main:
        splits = load_splits(cfg.data, log)
    # From the lock to the last write a signal only asks the loop to stop at the next step, where it
    # saves a checkpoint: no file is cut short, and the handlers go back after summary.json.
    stop_signal = []
    handlers = {s: signal.signal(s, lambda signum, frame: stop_signal.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}  # SIGUSR2: Slurm's warning before a time limit (submitit)
    try:
        if ddp.is_main:
            run_dir.acquire()
        ddp.barrier()
        seed_everything(cfg.seed)
        tokenizer, batches, state = build_run(cfg, splits, resume_ckpt, ddp.device)
        if ddp.is_main:
            record_start(out, cfg, args, changed, ddp.device, state.step)
        log(f"{state.model.num_params() / 1e6:.3f}M non-embedding parameters, vocab {cfg.model.vocab_size}, block "
            f"{cfg.model.block_size}, device {ddp.device}, train {state.order.n} examples, batch "
            f"{state.order.batch_size}" + (f"; resuming {out} from step {state.step}" if resume_ckpt else ""))
        # what metrics.TASK_METRICS read beside the model
        task = Task(cfg.data, tokenizer, batches["train"], forward_context(ddp.device, tc.precision))
        for note in (task.note(), slow_bf16_note(ddp.device, tc.precision)):
            if note:
                log(note)
        seconds, eval_seconds = run_loop(cfg, out, args, ddp, state, batches, tokenizer, task, resume_ckpt is not None,
                                         log, stop_signal)
        if ddp.is_main:
            # summary.json marks a finished run (sweep.py skips those) and holds its grokking numbers.
            dump_json(out / "summary.json", {"step": state.step, "seconds": round(seconds, 1), "eval_seconds":
                                             round(eval_seconds, 1), **grokking_summary(read_metrics(out))})
    except WriteError as e:
        raise UserError(f"{e}; the run stopped, and what it wrote before is whole. Once it can write, "
                        f"{how_to_go_on(out, run_dir)}") from None
    finally:
        run_dir.release()
        ddp.close()
        for s, h in handlers.items():
            signal.signal(s, h)
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


def run_loop(cfg, out, args, ddp, state, batches, tokenizer, task, resumed, log, stop_signal):
    """Evaluate on the grid, checkpoint, step; until max_steps, the stop rule or a signal (one
    that stop_signal, filled by train's handlers, holds).

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
    start = time.time()
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
    parser = ArgumentParser(
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
    if args.resume and args.out and Path(args.out).absolute() != Path(args.resume).absolute():
        parser.error(f"--resume continues the run in its own folder, so --out cannot take it elsewhere; to branch "
                     f"it, copy it first (cp -r {args.resume} {args.out}) and resume the copy")
    if args.resume and args.overwrite:
        parser.error("--overwrite deletes a run and starts it again; it cannot go with --resume")
    return args, overrides


def main(argv=None):
    args, overrides = parse_args(argv)
    train(args, overrides)


if __name__ == "__main__":
    run_cli(main)
