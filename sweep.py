"""Run a grid of train.py runs from a sweep file, then tabulate them.

    python sweep.py sweeps/ablate_wd.yaml                 # run what is missing, then summarise
    python sweep.py sweeps/ablate_wd.yaml --jobs 2        # two single-threaded runs side by side
    python sweep.py sweeps/ablate_wd.yaml --print-commands > jobs.txt   # for Slurm / GNU parallel
    python sweep.py sweeps/ablate_wd.yaml --summarize-only

A sweep file (YAML):
    name: ablate_wd
    out: results/ablate_wd            # one run directory per cell and seed
    base: configs/div97.yaml          # or a list of configs, each one cell
    seeds: [0, 1, 2]
    vary: {train.weight_decay: [0.0, 0.1, 1.0]}   # every combination of the listed values
    set: {train.stop_patience: 10}    # overrides shared by every run

Finished runs (those with summary.json) are skipped and interrupted ones resumed, so an
interrupted sweep picks up where it stopped. Writes summary.md and summary.csv (a row per cell,
mean ± standard deviation over seeds) and runs.csv (a row per run) into `out`.
"""

import argparse
import csv
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

from common import UserError, grokking_summary, read_metrics, run_cli

SWEEP_KEYS = {"name", "out", "base", "seeds", "vary", "set", "heldout"}


def load_sweep(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file '{path}' not found")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise UserError(f"unknown sweep key '{sorted(unknown)[0]}'; valid keys: {', '.join(sorted(SWEEP_KEYS))}")
    for key in ("name", "out", "base"):
        if key not in spec:
            raise UserError(f"sweep file '{path}' needs '{key}'")
    spec["base"] = [spec["base"]] if isinstance(spec["base"], str) else list(spec["base"])
    for base in spec["base"]:
        if not Path(base).is_file():
            raise UserError(f"sweep base config '{base}' not found")
    spec.setdefault("seeds", [0])
    spec.setdefault("vary", {})
    spec.setdefault("set", {})
    spec.setdefault("heldout", "test")
    return spec


def fmt(value):
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def plan(spec):
    """One dict per run: name, base, seed, the varied values, and its train.py command line."""
    keys = list(spec["vary"])
    runs = []
    # Seeds outermost: an interrupted sweep has covered every cell once before repeating any.
    for seed in spec["seeds"]:
        for base in spec["base"]:
            for values in itertools.product(*(spec["vary"][k] for k in keys)):
                cell = dict(zip(keys, values))
                parts = [Path(base).stem] + [f"{k.split('.')[-1]}{fmt(v)}" for k, v in cell.items()] + [f"s{seed}"]
                name = "_".join(parts).replace("/", "-").replace(" ", "")
                out = Path(spec["out"]) / name
                overrides = [f"--{k}={fmt(v)}" for k, v in {**spec["set"], **cell}.items()]
                if (out / "checkpoints" / "last.pt").exists() and not (out / "summary.json").exists():
                    # The same overrides again, so an edited sweep budget (say) reaches the run.
                    command = ["train.py", "--resume", str(out), *overrides]
                else:  # --overwrite: a run stopped before its first checkpoint starts again
                    command = ["train.py", "--config", base, "--out", str(out), f"--seed={seed}",
                               *overrides, "--overwrite"]
                command += ["--train.threads=1", "--no-progress"]
                runs.append({"name": name, "base": base, "seed": seed, "cell": cell, "out": out, "command": command})
    return runs


def run_one(run):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = run["out"].parent / f"{run['name']}.log"
    run["out"].parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, *run["command"]], stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code == 0:
        log.unlink()
    return code, time.time() - start, log


def summarize(spec, runs):
    """Per cell: mean and spread over seeds of the grokking numbers; writes summary.md/.csv."""
    heldout = spec["heldout"]
    cells, per_run = {}, []
    for run in runs:
        if not (run["out"] / "metrics.jsonl").exists():
            continue
        key = (Path(run["base"]).stem, tuple(run["cell"].items()))
        result = grokking_summary(read_metrics(run["out"]), heldout)
        result["finished"] = (run["out"] / "summary.json").exists()  # else stopped early or still running
        cells.setdefault(key, []).append(result)
        per_run.append({"run": run["name"], "seed": run["seed"], **result})
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    if per_run:
        with open(out / "runs.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(per_run[0]))
            writer.writeheader()
            writer.writerows(per_run)
    columns = ["config", *spec["vary"], "seeds", f"grokked ({heldout} 99%)", "train 99%", f"{heldout} 99%",
               "lag 99% (steps)", "train 100%", f"{heldout} 100%", "lag 100% (steps)", "final train acc",
               f"final {heldout} acc", "final train loss", f"final {heldout} loss", "last step"]
    rows = []
    for (base, cell), results in cells.items():
        def stat(name, digits=0):
            values = [r[name] for r in results if r[name] is not None]
            missing = len(results) - len(values)
            if not values:
                return "never"
            mean = statistics.fmean(values)
            text = f"{mean:.{digits}f}" if len(values) == 1 else \
                f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"
            return text + (f" ({missing} never)" if missing else "")

        unfinished = sum(not r["finished"] for r in results)
        rows.append([base, *[fmt(v) for _, v in cell],
                     str(len(results)) + (f" ({unfinished} unfinished)" if unfinished else ""),
                     f"{sum(r['grokked'] for r in results)}/{len(results)}",
                     stat("train_99"), stat(f"{heldout}_99"), stat("lag_99"),
                     stat("train_100"), stat(f"{heldout}_100"), stat("lag_100"), stat("final_train_acc", 4), stat(f"final_{heldout}_acc", 4),
                     stat("final_train_loss", 4), stat(f"final_{heldout}_loss", 4), stat("last_step")])
    with open(out / "summary.csv", "w", newline="") as f:
        csv.writer(f).writerows([columns, *rows])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep file (sweeps/*.yaml)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="single-threaded runs side by side (default: one per core)")
    parser.add_argument("--print-commands", action="store_true", help="print one train.py command per run and exit")
    parser.add_argument("--seeds", type=int, nargs="+", help="run only these of the sweep's seeds")
    parser.add_argument("--summarize-only", action="store_true", help="only rebuild summary.md/.csv from the logs")
    args = parser.parse_args()
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    spec = load_sweep(args.sweep)
    runs = plan(spec)
    if args.seeds:
        unknown = sorted(set(args.seeds) - set(spec["seeds"]))
        if unknown:
            raise UserError(f"--seeds {unknown} not in the sweep's seeds {spec['seeds']}")
    todo_runs = [r for r in runs if not args.seeds or r["seed"] in args.seeds]
    if args.print_commands:
        try:
            for run in todo_runs:
                print("OMP_NUM_THREADS=1 python " + " ".join(shlex.quote(c) for c in run["command"]))
        except BrokenPipeError:  # e.g. piped into head
            sys.stderr.close()
        return
    if not args.summarize_only:
        todo = [r for r in todo_runs if not (r["out"] / "summary.json").exists()]
        print(f"{spec['name']}: {len(todo_runs)} runs, {len(todo_runs) - len(todo)} already done, "
              f"{args.jobs} at a time", file=sys.stderr)
        failed = 0
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_one, r): r for r in todo}
            for i, future in enumerate(as_completed(futures), 1):
                run = futures[future]
                code, seconds, log = future.result()
                status = "done" if code == 0 else f"FAILED (exit {code}; see {log})"
                failed += code != 0
                print(f"[{i}/{len(todo)}] {run['name']}: {status} in {seconds:.0f}s", file=sys.stderr)
        if failed:
            print(f"{failed} runs failed; run the sweep again to retry them", file=sys.stderr)
    print(summarize(spec, runs))


if __name__ == "__main__":
    run_cli(main)
