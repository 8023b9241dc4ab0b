"""Run a grid of train.py runs from a sweep file, then tabulate them.

    python sweep.py experiments/ablate_wd/sweep.yaml             # run what is missing, then summarise
    python sweep.py experiments/ablate_wd/sweep.yaml --jobs 2    # two single-threaded runs side by side
    python sweep.py experiments/ablate_wd/sweep.yaml --print-commands > jobs.txt   # for Slurm / GNU parallel
    python sweep.py experiments/ablate_wd/sweep.yaml --summarize-only
    python sweep.py experiments/warmup_muon/sweep.yaml --configs add97_l2 sub97_l2 --seeds 0   # a part of it
    python sweep.py experiments/lever_precision/sweep.yaml experiments/levers/sweep.yaml --summarize-only
    python sweep.py experiments/ops_fraction/sweep.yaml --executor slurm --partition cpu --time-min 60   # a cluster

A sweep is a folder, experiments/<name>/, whose sweep.yaml says what to run; each run's log
directory, the tables and the study's figures land beside it. sweep.yaml:
    base: configs/div97_paper.yaml    # or a list of configs, each one cell
    seeds: [0, 1, 2]
    vary: {train.weight_decay: [0.0, 0.1, 1.0]}   # every combination of the listed values
    set: {train.stop_patience: 10}    # overrides shared by every run

    cells: [{}, {train.eps: 1.0e-6}]  # optional: named override sets, each crossed with vary

Finished runs (those with summary.json) are skipped and interrupted ones resumed from their
checkpoint, so an interrupted sweep picks up where it stopped. A run with a log but no checkpoint
(committed logs keep no checkpoints) is left alone and said so: no sweep deletes a log unless
given --rerun-destroying-logs. The same rules hold with --executor slurm, which sends each missing
run to Slurm as one job through submitit (--executor local runs those jobs as local processes).
Writes summary.md and summary.csv (a row per cell, mean ± standard
deviation over seeds, with a column per number of runlog.grokking_summary) and runs.csv (a row
per run) into the sweep's folder.
"""

import argparse
import csv
import fcntl
import io
import itertools
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

from runlog import ArgumentParser, UserError, grokking_summary, int_arg, load_yaml_mapping, read_metrics, run_cli, write_text
from tasks import OPERATIONS

SWEEP_KEYS = {"base", "seeds", "vary", "cells", "set", "heldout"}


def load_sweep(path):
    path = Path(path)
    spec = load_yaml_mapping(path, "sweep file", "a study's sweep file is experiments/<name>/sweep.yaml")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise UserError(f"unknown sweep key '{sorted(unknown)[0]}' in '{path}'; valid keys: {', '.join(sorted(SWEEP_KEYS))}")
    if "base" not in spec:
        raise UserError(f"sweep file '{path}' needs 'base': the config (or list of configs) its runs start from")
    spec["name"] = path.parent.name  # a sweep is its folder: runs, tables and figures land there
    spec["out"] = str(path.parent)
    spec["base"] = [spec["base"]] if isinstance(spec["base"], str) else list(spec["base"])
    for base in spec["base"]:
        if not Path(base).is_file():
            raise UserError(f"sweep base config '{base}' not found")
    spec.setdefault("seeds", [0])
    spec.setdefault("vary", {})
    spec.setdefault("cells", [{}])  # named sets of overrides, each crossed with vary
    spec.setdefault("set", {})
    spec.setdefault("heldout", None)  # None: test if the runs logged it, else val
    if not isinstance(spec["seeds"], list) or not spec["seeds"] or not all(type(s) is int for s in spec["seeds"]):
        raise UserError(f"'seeds' in '{path}' must be a non-empty list of integers, like [0, 1, 2]")
    vary = spec["vary"]
    if not isinstance(vary, dict) or not all(isinstance(v, list) and v for v in vary.values()):
        raise UserError(f"'vary' in '{path}' must map each config key to a non-empty list of values")
    if not isinstance(spec["cells"], list) or not spec["cells"] or not all(isinstance(c, dict) for c in spec["cells"]):
        raise UserError(f"'cells' in '{path}' must be a list of mappings from config keys to values")
    return spec


def fmt(value):
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run_name(base, cell, seed):
    """'<config>_<key><value>..._s<seed>'; an operation by its data folder name (op'*' -> opmul)."""
    shown = lambda k, v: OPERATIONS[v].slug if k == "data.op" and v in OPERATIONS else fmt(v)
    parts = [Path(base).stem] + [f"{k.split('.')[-1]}{shown(k, v)}" for k, v in cell.items()] + [f"s{seed}"]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def plan(spec, destroy_logs=False):
    """One dict per run: name, base, seed, cell, out, and what to do: its train.py command line
    (start or resume), or None with the reason it is left alone."""
    keys = list(spec["vary"])
    runs = []
    # Seeds outermost: an interrupted sweep has covered every cell once before repeating any.
    for seed, base, extra, values in itertools.product(spec["seeds"], spec["base"], spec["cells"],
                                                      itertools.product(*(spec["vary"][k] for k in keys))):
        cell = {**extra, **dict(zip(keys, values))}
        name = run_name(base, cell, seed)
        out = Path(spec["out"]) / name
        overrides = [f"--{k}={fmt(v)}" for k, v in {**spec["set"], **cell}.items()]
        command, skip = _next_action(out, base, seed, overrides, destroy_logs)
        runs.append({"name": name, "base": base, "seed": seed, "cell": cell, "out": out,
                     "command": command, "skip": skip})
    return runs


def _next_action(out, base, seed, overrides, destroy_logs):
    """(train.py command, None), or (None, why the run is left as it is). Never deletes a log
    unless destroy_logs (--rerun-destroying-logs) says so."""
    # one thread per run, unless the sweep sets it (a key may be given once)
    threads = [*([] if any(o.startswith("--train.threads=") for o in overrides) else ["--train.threads=1"]),
               "--no-progress"]
    fresh = ["train.py", "--config", base, "--out", str(out), f"--seed={seed}", *overrides, *threads]
    has_log = (out / "metrics.jsonl").exists()
    if destroy_logs and has_log:
        return fresh + ["--overwrite"], None
    if (out / "summary.json").exists():
        return None, "finished"
    if (out / "checkpoints" / "last.pt").exists():
        # The same overrides again, so an edited sweep budget (say) reaches the run.
        return ["train.py", "--resume", str(out), *overrides, *threads], None
    if has_log or (out / "checkpoints").exists():
        return None, "unfinished, with a log but no checkpoint to resume (--rerun-destroying-logs starts it again)"
    return fresh, None


class Runs:
    """The train.py processes running now, so that a Ctrl-C reaches each of them once, and no
    queued run starts after it."""

    def __init__(self):
        self.lock, self.procs, self.stopping = threading.RLock(), {}, False  # a second Ctrl-C re-enters stop

    def start(self, name, command, log, env):
        with self.lock:
            if self.stopping:
                return None
            # A session of its own: the sweep alone passes the signal on, once.
            self.procs[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
            return self.procs[name]

    def stop(self):
        """Ask every running train.py to checkpoint and stop (what Ctrl-C does to one), start no more."""
        with self.lock:
            self.stopping = True
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)


def run_one(run, runs=None):
    """(exit status, seconds, log file) of one train.py run; (None, 0, None) if the sweep is stopping."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = run["out"].parent / f"{run['name']}.log"
    run["out"].parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as f:
        proc = (runs or Runs()).start(run["name"], [sys.executable, *run["command"]], f, env)
        if proc is None:
            log.unlink()
            return None, 0.0, None
        code = proc.wait()
    if code == 0:
        log.unlink()
    return code, time.time() - start, log


def _headline(key):
    """Keys also given as medians (steps and seconds to grok) or extremes (how far it fell)."""
    if key in ("grokked_at", "seconds_to_99", "delay_99") or (key.endswith("_99") and key.startswith(("val", "test"))):
        return "median"
    return "min" if key.startswith("lowest_") else "total" if key == "falls_below_90" else None


def stat(values, digits):
    """'mean ± sd (k never)' of the values that are not None; 'never' if none are."""
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    mean = statistics.fmean(known)
    text = f"{mean:.{digits}f}" if len(known) == 1 else f"{mean:.{digits}f} ± {statistics.stdev(known):.{digits}f}"
    return text + (f" ({len(values) - len(known)} never)" if len(known) < len(values) else "")


def cell_row(results):
    """A table row from the runs of one cell: counts for yes/no keys, mean ± sd for numbers."""
    row = {"seeds": str(len(results))}
    unfinished = sum(not r["finished"] for r in results)
    if unfinished:
        row["seeds"] += f" ({unfinished} unfinished)"
    for key in [k for k in results[0] if _headline(k)]:
        known = [r[key] for r in results if r.get(key) is not None]
        how = _headline(key)
        value = {"median": statistics.median, "min": min, "total": sum}[how](known) if known else None
        if how == "min" and value is not None:  # a floor rounds down, so "never below" stays true
            value = math.floor(value * 1000) / 1000
        digits = 3 if how == "min" else 2 if key == "delay_99" else 0  # the delay is a ratio, not a step
        row[f"{how} {key}"] = "never" if value is None else f"{value:.{digits}f}"
    # where each run ended (the stop rule's step, or the budget), in the order of the sweep's seeds
    row["last_step per seed"] = ", ".join(str(r["last_step"]) for r in results)
    for key in results[0]:
        values = [r[key] for r in results]
        if key == "finished":
            continue
        if any(isinstance(v, bool) for v in values):
            row[key] = f"{sum(bool(v) for v in values)}/{len(values)}"
        else:
            small = any(isinstance(v, float) and abs(v) < 10 for v in values if v is not None)
            row[key] = stat(values, 4 if small else 0)
    return row


def summarize(spec, runs):
    """Per cell: the grokking numbers over seeds; writes summary.md/.csv and runs.csv into the sweep's folder."""
    columns, rows, per_run, waiting = summary_table(spec, runs, with_runs=True)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    if per_run:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(per_run[0]))
        writer.writeheader()
        writer.writerows(per_run)
        write_text(out / "runs.csv", text.getvalue())
    text = io.StringIO(newline="")
    csv.writer(text).writerows([columns, *[[row.get(c, "") for c in columns] for row in rows]])
    write_text(out / "summary.csv", text.getvalue())
    write_text(out / "summary.md", format_table(columns, rows) + "\n")
    if waiting:
        print(f"{spec['name']}: left out of the table, no evaluation logged yet: {', '.join(waiting)}", file=sys.stderr)
    return columns, rows


def summary_table(spec, runs, with_runs=False):
    """(columns, rows) of the sweep's table from its logs, writing nothing; with_runs: also the
    per-run rows and the runs with no evaluation yet."""
    cells, per_run, waiting = {}, [], []
    for run in runs:
        if not (run["out"] / "metrics.jsonl").exists():
            continue
        records = read_metrics(run["out"], allow_empty=True)
        if not records:  # started, but its first evaluation is not written yet
            waiting.append(run["name"])
            continue
        result = grokking_summary(records, spec["heldout"])
        result["finished"] = (run["out"] / "summary.json").exists()  # else stopped early or still running
        cells.setdefault((Path(run["base"]).stem, tuple(run["cell"].items())), []).append(result)
        per_run.append({"run": run["name"], "seed": run["seed"], **result})
    keys = list(dict.fromkeys(k for _, cell in cells for k, _ in cell))
    # A key a cell does not set shows the sweep's `set:` value, else '-' (the base config's).
    given = lambda cell, k: fmt(cell[k]) if k in cell else fmt(spec["set"][k]) if k in spec["set"] else "-"
    rows = [{"config": base, **{k: given(dict(cell), k) for k in keys}, **cell_row(results)}
            for (base, cell), results in cells.items()]
    columns = list(rows[0]) if rows else ["config"]
    return (columns, rows, per_run, waiting) if with_runs else (columns, rows)


def check_configs(spec):
    """Every run's config loads (keys, types, values) before any run starts."""
    from config import load_config  # imports torch; --summarize-only and --print-commands do not need it

    for base, extra, values in itertools.product(spec["base"], spec["cells"],
                                                 itertools.product(*spec["vary"].values())):
        cell = {**spec["set"], **extra, **dict(zip(spec["vary"], values))}
        load_config(base, [f"--{k}={fmt(v)}" for k, v in cell.items()])


def to_run(spec, runs, how):
    """The runs that have a command, after saying which are left alone and why, and how many run."""
    todo = [r for r in runs if r["command"]]
    for run in runs:
        if run["skip"] and run["skip"] != "finished":
            print(f"skip {run['out']}: {run['skip']}", file=sys.stderr)
    print(f"{spec['name']}: {len(runs)} runs, {sum(r['skip'] == 'finished' for r in runs)} already done, "
          f"{len(todo)} to run, {how}", file=sys.stderr)
    return todo


def run_all(spec, runs, jobs):
    """Run the runs that have a command, jobs at a time; returns how many failed. The first Ctrl-C
    (or SIGTERM) starts no more runs, lets the running ones checkpoint, says where each stands and
    exits 130."""
    todo = to_run(spec, runs, f"{jobs} at a time")
    failed, codes, running = 0, {}, Runs()
    interrupted = []
    handlers = {s: signal.signal(s, lambda signum, frame: (interrupted.append(signum), running.stop()))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_one, r, running): r for r in todo}
            for i, future in enumerate(as_completed(futures), 1):
                run = futures[future]
                code, seconds, log = future.result()
                codes[run["name"]] = code
                if code is None or (interrupted and code == 130):
                    continue  # not started, or stopped by the Ctrl-C: said below
                failed += code != 0
                status = "done" if code == 0 else f"FAILED (exit {code}; see {log})"
                print(f"[{i}/{len(todo)}] {run['name']}: {status} in {seconds:.0f}s", file=sys.stderr)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    if interrupted:
        stopped = [r["name"] for r in todo
                   if codes.get(r["name"]) == 130 and (r["out"] / "checkpoints" / "last.pt").exists()]
        print(f"{spec['name']}: interrupted. {sum(c == 0 for c in codes.values())} of {len(todo)} runs finished, "
              f"{failed} failed, {len(stopped)} stopped with a checkpoint ({', '.join(stopped) or 'none'}), "
              f"{len(todo) - len(stopped) - failed - sum(c == 0 for c in codes.values())} not started. Run the same "
              "command again to go on: finished runs are skipped, stopped ones resumed", file=sys.stderr)
        raise SystemExit(130)
    if failed:
        print(f"{failed} runs failed; run the sweep again to retry them", file=sys.stderr)
    return failed


def run_job(run, root):
    """One run as a submitit job (on a Slurm node, or a local process): train.py from the repo root.
    A cancel, Ctrl-C or Slurm's warning before the time limit (SIGUSR2) is passed on to train.py
    as Ctrl-C, so that it checkpoints and the next sweep resumes it."""
    os.chdir(root)
    running = Runs()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        signal.signal(s, lambda signum, frame: running.stop())
    code, seconds, log = run_one(run, running)
    return code, seconds, str(log)


def run_submitit(spec, todo, args):
    """Each run one job through submitit: Slurm (--executor slurm) or local processes (--executor
    local, all at once; what the tests use). Waits for the jobs; returns how many failed. Ctrl-C
    while waiting leaves Slurm's jobs running (they checkpoint as train.py does) and says so."""
    try:
        import submitit
    except ImportError:
        raise UserError(f"--executor {args.executor} needs submitit: pip install submitit")
    folder = Path(spec["out"]) / "submitit"  # the jobs' own logs (gitignored)
    executor = submitit.AutoExecutor(folder=folder, cluster=args.executor)
    parameters = {"name": f"sweep_{spec['name']}", "timeout_min": args.time_min, "cpus_per_task": args.cpus_per_task}
    if args.gpus_per_node:
        parameters["gpus_per_node"] = args.gpus_per_node
    if args.partition:
        parameters["slurm_partition"] = args.partition
    if args.array_parallelism:
        parameters["slurm_array_parallelism"] = args.array_parallelism
    executor.update_parameters(**parameters)
    print(f"{spec['name']}: {len(todo)} runs to {args.executor} through submitit (job logs in {folder})", file=sys.stderr)
    jobs = executor.map_array(run_job, todo, [Path.cwd()] * len(todo)) if todo else []
    failed = 0
    try:
        for i, (job, run) in enumerate(zip(jobs, todo), 1):
            try:
                code, seconds, log = job.result()
            except Exception as e:  # the job itself failed (a node lost, a time limit): submitit says why
                code, seconds, log = None, 0.0, f"{folder}, job {job.job_id}: {type(e).__name__}"
            failed += code != 0
            status = ("done" if code == 0 else "stopped with a checkpoint (a cancel or the time limit); the next sweep "
                      "resumes it" if code == 130 else f"FAILED ({'exit ' + str(code) if code is not None else 'job failed'}; see {log})")
            print(f"[{i}/{len(todo)}] {run['name']}: {status} in {seconds:.0f}s (job {job.job_id})", file=sys.stderr)
    except KeyboardInterrupt:
        waiting = [job.job_id for job in jobs if not job.done()]
        if args.executor == "local":
            for job in jobs:
                job.cancel(check=False)
        where = "cancelled" if args.executor == "local" else f"still queued or running in Slurm ({', '.join(waiting)})"
        print(f"{spec['name']}: stopped waiting; {len(waiting)} jobs {where}. Run the same command again when they "
              "are done: finished runs are skipped, stopped ones resumed", file=sys.stderr)
        raise SystemExit(130)
    if failed:
        print(f"{failed} runs failed; run the sweep again to retry them", file=sys.stderr)
    return failed


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", metavar="sweep",
                        help="sweep file (experiments/<name>/sweep.yaml); several are handled in turn and tabulated together")
    parser.add_argument("--jobs", type=int_arg(1, 4096), default=os.cpu_count() or 1,
                        help="single-threaded runs side by side (default: one per core)")
    parser.add_argument("--print-commands", action="store_true", help="print one train.py command per run and exit")
    parser.add_argument("--seeds", type=int_arg(), nargs="+", help="run only these of the sweep's seeds")
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="run only the runs of these base configs (by file name, e.g. add97_l2)")
    parser.add_argument("--summarize-only", action="store_true", help="only rebuild summary.md/.csv from the logs")
    parser.add_argument("--columns", nargs="+", metavar="COLUMN",
                        help="print only these columns, the config keys that differ folded into one 'setting' "
                             "column (the files keep every column)")
    parser.add_argument("--rerun-destroying-logs", action="store_true",
                        help="start every run that has a log again from scratch, DELETING its log and checkpoints")
    cluster = parser.add_argument_group("where the runs run")
    cluster.add_argument("--executor", choices=["pool", "local", "slurm"], default="pool",
                         help="pool (default): --jobs processes on this machine; slurm: one Slurm job per run "
                              "through submitit (pip install submitit); local: the same jobs as local processes, "
                              "all at once (what the tests use)")
    cluster.add_argument("--partition", help="Slurm partition (--executor slurm)")
    cluster.add_argument("--time-min", type=int_arg(1, 10**6), default=60,
                         help="time limit of each job in minutes (default 60); a run cut off by it resumes from its "
                              "checkpoint at the next sweep")
    cluster.add_argument("--cpus-per-task", type=int_arg(1, 4096), default=1, help="CPUs of each job (default 1)")
    cluster.add_argument("--gpus-per-node", type=int_arg(0, 64), default=0, help="GPUs of each job (default 0)")
    cluster.add_argument("--array-parallelism", type=int_arg(1, 10**6),
                         help="at most this many of the sweep's jobs at once (Slurm's array throttle)")
    args = parser.parse_args()
    slurm_only = [f"--{name.replace('_', '-')}" for name in ("partition", "array_parallelism") if getattr(args, name)]
    if slurm_only and args.executor != "slurm":
        raise UserError(f"{slurm_only[0]} is a Slurm option: add --executor slurm")
    if args.executor == "slurm" and shutil.which("sbatch") is None and not (args.print_commands or args.summarize_only):
        raise UserError("--executor slurm submits with sbatch, which this machine does not have: run it on the "
                        "cluster's login node, or use --executor pool here")
    specs = [load_sweep(path) for path in args.sweeps]  # every file is checked before anything runs
    tables = [one_sweep(spec, args) for spec in specs]
    if not args.print_commands:
        columns, rows = merge_tables(tables, [spec["set"] for spec in specs])
        if args.columns:
            columns, rows = select_columns(columns, rows, args.columns)
        print(format_table(columns, rows))
    failed = sum(spec.get("failed", 0) for spec in specs)
    if failed:
        sys.exit(1)  # a script or a scheduler running the sweep must see that it is not complete


def lock_study(spec):
    """Hold the study's folder for this process (fcntl, as train.py holds a run directory): two
    sweeps of one study would start the same runs twice. Released when the process ends."""
    folder = Path(spec["out"])
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"another sweep.py is running the study '{folder}'; wait for it to end (one sweep per "
                        "study at a time)")
    return fd


def one_sweep(spec, args):
    """Runs (or prints the commands of) one sweep's missing runs; returns its summary table."""
    runs = plan(spec, args.rerun_destroying_logs)
    if args.seeds:
        unknown = sorted(set(args.seeds) - set(spec["seeds"]))
        if unknown:
            raise UserError(f"--seeds {unknown} not in the sweep's seeds {spec['seeds']}")
    if args.configs:
        names = {Path(b).stem for b in spec["base"]}
        unknown = sorted(set(args.configs) - names)
        if unknown:
            raise UserError(f"--configs {unknown} not among the sweep's base configs {sorted(names)}")
    chosen = [r for r in runs if (not args.seeds or r["seed"] in args.seeds)
              and (not args.configs or Path(r["base"]).stem in args.configs)]
    if args.print_commands:
        try:
            for run in chosen:
                print("OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(c) for c in run["command"])
                      if run["command"] else f"# skip {run['out']}: {run['skip']}")
        except BrokenPipeError:  # e.g. piped into head
            sys.stderr.close()
        return None
    if not args.summarize_only:
        check_configs(spec)
        lock_study(spec)
        runs = plan(spec, args.rerun_destroying_logs)  # again, now that no other sweep can change the runs
        chosen = [r for r in runs if r["name"] in {c["name"] for c in chosen}]
        if args.executor == "pool":
            spec["failed"] = run_all(spec, chosen, args.jobs)
        else:
            spec["failed"] = run_submitit(spec, to_run(spec, chosen, f"as {args.executor} jobs"), args)
    return summarize(spec, runs)


def merge_tables(tables, sets=None):
    """Several sweeps' tables, each (columns, rows), as one: the columns of all of them (the config
    keys first), plus the `set:` keys (sets: each sweep's) on which the sweeps differ, filled from
    each sweep's `set:`; '-' where neither a sweep's cells nor its `set:` give a key (the base
    config's value)."""
    if len(tables) == 1:
        return tables[0]
    sets = sets or [{}] * len(tables)
    differing = [k for s in sets for k in s if any(k not in other or other[k] != s[k] for other in sets)]
    keys = list(dict.fromkeys([c for columns, _ in tables for c in columns[:columns.index("seeds")]] + differing))
    rest = list(dict.fromkeys(c for columns, _ in tables for c in columns[columns.index("seeds"):]))
    rows = [{**{k: fmt(v) for k, v in given.items() if k in keys}, **row}
            for (_, table_rows), given in zip(tables, sets) for row in table_rows]
    return keys + rest, rows


def format_table(columns, rows):
    """A markdown table; a row without a column shows '-'."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row.get(c, "-") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def select_columns(columns, rows, wanted):
    """The config column, one 'setting' column ('key=value, ...' of the config keys a row sets;
    'as base' where it sets none) and the wanted columns, in that order."""
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise UserError(f"no column '{missing[0]}' in this table; columns: {', '.join(columns)}")
    keys = [c for c in columns[1:columns.index("seeds")]]
    for row in rows:
        given = [f"{k.split('.')[-1]}={row[k]}" for k in keys if row.get(k, "-") != "-"]
        row["setting"] = ", ".join(given) or "as base"
    return ["config", "setting", *wanted], rows


if __name__ == "__main__":
    run_cli(main)
