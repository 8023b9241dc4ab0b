"""Figures from run directories (their metrics.jsonl and config.yaml; nothing else), or with
--spectrum from checkpoints.

    python plot.py experiments/div97_paper/div97_paper_s0 experiments/div97_paper/div97_paper_s1 --out experiments/div97_paper/div97_paper.png
    python plot.py experiments/ablate_wd/* --group-by train.weight_decay --out wd.png
    python plot.py --spectrum checkpoints/div97.pt runs/div97_memorised --out spectrum.png

Default: accuracy (top) and loss (bottom) against optimisation steps on a log axis, as in Figure 1
of Power et al. 2022. Several runs are drawn as the mean with a min-max band; dotted lines mark the
first steps where train and validation accuracy reach 99%. Under them, where the logs carry them,
the weight norm and the progress measures of progress.py (fourier_*: the embedding's power share in
its key frequencies; the training loss in full, restricted to them and without them). --group-by
overlays one curve per value of a config key (or per combination of values of several keys); with
--panels, one small panel per value instead, each seed drawn as its own line, so collapses are not
averaged away. --mark STEP=TEXT (repeatable) draws a labelled vertical line at a step, e.g. what a
paper reports, and widens the step axis to take it in:
    python plot.py RUN --out f.png --mark "1e5=paper: generalization starts" --mark "1e6=paper: val ~100%"
--versus KEY (with --group-by) draws each run as one point against a config key instead: its best
held-out accuracy, and its first step at 99%, one line per group (the operations by training
fraction, say):
    python plot.py experiments/ops_fraction/*_s0 --versus data.train_frac --group-by data.op --out ops.png
--spectrum draws checkpoints instead: the power of each one's token embedding per frequency (bars),
the residues in the order of progress.py (discrete-log order for / and *); this mode loads torch.
"""

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from runlog import (GROKKED, KEYS_ADDED_LATER, ArgumentParser, UserError, check_output_file, first_step,  # noqa: E402
                    read_metrics, read_run_config, run_cli, write_atomic)


def config_value(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if dotted in KEYS_ADDED_LATER:  # a run made before the key existed
                return KEYS_ADDED_LATER[dotted]
            raise UserError(f"config key '{dotted}' is not in this run's config.yaml")
        node = node[part]
    return node


def on_grid(runs, key, grid):
    """Each run's curve on a shared step grid; a run that stopped early keeps its last value."""
    rows = []
    for records in runs:
        steps = np.array([r["step"] for r in records], dtype=float)
        values = np.array([r.get(key, np.nan) for r in records], dtype=float)
        rows.append(np.interp(grid, steps, values))
    return np.array(rows)


def draw_band(ax, grid, curves, label, color, style="-"):
    ax.plot(grid, curves.mean(axis=0), style, color=color, label=label, lw=1.6)
    if len(curves) > 1:
        ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.18, lw=0)


def step_grid(runs):
    steps = sorted({r["step"] for records in runs for r in records})
    return np.array([max(s, 1) for s in steps], dtype=float)  # step 0 sits at 1 on a log axis


def progress_keys(runs):
    """The progress measures every run logged, found by name (progress.py writes them): the top-k
    power share, and the training losses (full, restricted, excluded); ([], []) if none."""
    logged = [set().union(*records) for records in runs]
    common = set.intersection(*logged)
    shares = sorted(k for k in common if re.fullmatch(r"fourier_top\d+_share", k))
    losses = [k for k in ("fourier_full_loss", "fourier_restricted_loss", "fourier_excluded_loss") if k in common]
    return shares, losses


def draw_progress(axes, runs, grid, shares, losses):
    """Nanda et al. 2023's picture under the accuracy: how much of the embedding sits in its key
    frequencies, and how the training loss fares with only them (restricted) or without them
    (excluded). axes: one panel for the shares if any, then one for the losses if any."""
    axes = iter(axes)
    if shares:
        ax = next(axes)
        for key in shares:
            count = re.fullmatch(r"fourier_top(\d+)_share", key)[1]
            draw_band(ax, grid, on_grid(runs, key, grid), f"top {count} frequencies", "tab:orange")
        ax.set_ylabel("embedding power share")
        ax.set_ylim(-0.02, 1.02)
    if losses:
        ax = next(axes)
        colors = {"full": "tab:red", "restricted": "tab:orange", "excluded": "tab:gray"}
        for key in losses:
            name = key.split("_")[1]
            draw_band(ax, grid, on_grid(runs, key, grid), name, colors[name])
        ax.set_ylabel("train loss, answer token")
        ax.set_yscale("log")


def parse_marks(texts):
    """'1e5=paper: generalization starts' -> (100000.0, 'paper: generalization starts')."""
    marks = []
    for text in texts or []:
        step, sep, label = text.partition("=")
        try:
            value = float(step)
        except ValueError:
            value = 0.0
        if not sep or not np.isfinite(value) or value <= 0 or not label.strip():
            raise UserError(f"--mark '{text}' is not STEP=TEXT with a positive step, e.g. --mark '1e5=paper: val rises'")
        marks.append((value, label.strip()))
    return marks


def draw_marks(axes, marks, grid):
    """Reference steps (what a paper reports) as grey dashed lines on every panel, labelled on the first;
    the step axis widens to show them all, since a run may stop short of them."""
    for step, label in marks:
        for ax in axes:
            ax.axvline(step, color="0.35", ls="--", lw=1)
        axes[0].annotate(label, (step, 0.5), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                         ha="right", va="center", color="0.25")
    if marks:
        steps = [s for s, _ in marks]
        axes[0].set_xlim(min(grid[0], *steps) / 1.3, max(grid[-1], *steps) * 1.3)


def figure_runs(run_dirs, out, title=None, marks=()):
    runs = [read_metrics(d) for d in run_dirs]
    grid = step_grid(runs)
    with_norm = all(any("weight_norm" in r for r in records) for records in runs)
    shares, losses = progress_keys(runs)
    n = 2 + with_norm + bool(shares) + bool(losses)
    fig, axes = plt.subplots(n, 1, figsize=(7, 7 if n == 2 else 3 + 2 * n), sharex=True)
    acc_ax, loss_ax = axes[:2]
    if with_norm:  # the weights' norm under the curves: what weight decay shrinks while grokking
        draw_band(axes[2], grid, on_grid(runs, "weight_norm", grid), "all parameters", "tab:purple")
        axes[2].set_ylabel("weight norm (L2)")
    progress_axes = list(axes[2 + with_norm:])
    draw_progress(progress_axes, runs, grid, shares, losses)
    colors = {"train": "tab:red", "val": "tab:green", "test": "tab:blue"}
    for split in ("train", "val"):
        if not any(f"{split}_acc" in r[0] for r in runs):
            continue
        draw_band(acc_ax, grid, on_grid(runs, f"{split}_acc", grid) * 100, split, colors[split])
        draw_band(loss_ax, grid, on_grid(runs, f"{split}_loss", grid), split, colors[split])
        reached = [first_step(r, f"{split}_acc", GROKKED) for r in runs]
        for step in filter(None, reached):  # also on the progress panels: what moved before 99%
            for ax in [acc_ax, *progress_axes]:
                ax.axvline(max(step, 1), color=colors[split], ls=":", lw=1)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_ylim(-2, 102)
    loss_ax.set_ylabel("loss (answer tokens)")
    loss_ax.set_yscale("log")
    axes[-1].set_xlabel("optimisation steps")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    draw_marks(axes, marks, grid)
    count = f"{len(runs)} runs: mean, min-max band" if len(runs) > 1 else "1 run"
    acc_ax.set_title(title or f"{Path(run_dirs[0]).name} ({count}; dotted: first 99%)")
    save(fig, out)
    return fig


def group_runs(run_dirs, keys):
    """Each run's records, grouped by the values of the config keys."""
    groups = defaultdict(list)
    for d in run_dirs:
        config = read_run_config(d)
        groups[tuple(config_value(config, key) for key in keys)].append(read_metrics(d))
    return groups


def figure_groups(run_dirs, keys, out, title=None, split="val"):
    groups = group_runs(run_dirs, keys)
    fig, (acc_ax, loss_ax) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    cmap = plt.get_cmap("viridis")
    values = sorted(groups, key=lambda group: [(isinstance(v, str), v) for v in group])
    # One key keeps its full name in the legend; several are shortened to their last part.
    names = keys if len(keys) == 1 else [key.split(".")[-1] for key in keys]
    for i, value in enumerate(values):
        runs = groups[value]
        grid = step_grid(runs)
        color = cmap(i / max(1, len(values) - 1))
        label = ", ".join(f"{name}={v}" for name, v in zip(names, value)) + f" ({len(runs)})"
        draw_band(acc_ax, grid, on_grid(runs, f"{split}_acc", grid) * 100, label, color)
        draw_band(acc_ax, grid, on_grid(runs, "train_acc", grid) * 100, None, color, style=":")
        draw_band(loss_ax, grid, on_grid(runs, f"{split}_loss", grid), None, color)
    acc_ax.set_ylabel(f"{split} accuracy (%) [dotted: train]")
    acc_ax.set_ylim(-2, 102)
    loss_ax.set_ylabel(f"{split} loss")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("optimisation steps")
    for ax in (acc_ax, loss_ax):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    acc_ax.legend(loc="best", fontsize=8)
    acc_ax.set_title(title or f"{split} accuracy by {', '.join(keys)} (mean and min-max over seeds)")
    save(fig, out)
    return fig


def differing_labels(values, names):
    """Short labels for groups that each change a few keys: per group, only the keys whose value
    differs from the most common value of that key; a group that changes none is the baseline."""
    modes = []
    for column in zip(*values):
        (top, count), *rest = Counter(column).most_common()
        # Only a value shared by several groups, and more of them than any other, is "the usual one".
        modes.append(top if count > 1 and (not rest or rest[0][1] < count) else object())
    labels = []
    for value in values:
        changed = [f"{name}={v}" for name, v, mode in zip(names, value, modes) if v != mode]
        labels.append(", ".join(changed) or "baseline")
    return labels


def figure_panels(run_dirs, keys, out, title=None, split="val"):
    """One small panel per group, each seed its own line: a collapse after grokking stays visible
    instead of being averaged into a band."""
    groups = group_runs(run_dirs, keys)
    values = sorted(groups, key=lambda group: [(isinstance(v, str), str(v)) for v in group])
    labels = differing_labels(values, [key.split(".")[-1] for key in keys])
    order = sorted(range(len(values)), key=lambda i: labels[i] != "baseline")  # the baseline first
    values, labels = [values[i] for i in order], [labels[i] for i in order]
    columns = min(4, len(values))
    rows = -(-len(values) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, value, label in zip(axes.flat, values, labels):
        for records in groups[value]:
            steps = [max(r["step"], 1) for r in records if f"{split}_acc" in r]
            ax.plot(steps, [100 * r[f"{split}_acc"] for r in records if f"{split}_acc" in r], lw=0.9)
        ax.axhline(100 * GROKKED, color="grey", ls=":", lw=0.8)
        ax.set_title(f"{label} ({len(groups[value])})", fontsize=8)
        ax.set_xscale("log")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(values):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{split} accuracy (%)")
    for column in range(columns):  # the lowest drawn panel of each column carries the step axis
        bottom = [ax for ax in axes[:, column] if ax.get_visible()][-1]
        bottom.xaxis.set_tick_params(labelbottom=True)
        bottom.set_xlabel("optimisation steps")
    fig.suptitle(title or f"{split} accuracy, one line per seed (dotted: 99%)", fontsize=10)
    save(fig, out)
    return fig


def figure_spectrum(checkpoints, out, title=None):
    """One bar chart per checkpoint, side by side: the share of its token embedding's power at each
    frequency (the constant left out), key frequencies labelled. Loads torch, unlike the rest."""
    from checkpoint import load_checkpoint, model_from_checkpoint
    from progress import TOP_FREQUENCIES, checkpoint_spectrum, key_frequencies, top_share

    fig, axes = plt.subplots(1, len(checkpoints), figsize=(4.5 * len(checkpoints), 3.4), sharey=True, squeeze=False)
    for ax, path in zip(axes[0], checkpoints):
        ckpt = load_checkpoint(path)
        model, tokenizer, cfg = model_from_checkpoint(ckpt)
        try:
            power, order = checkpoint_spectrum(model, tokenizer, cfg.data)
        except ValueError as e:
            raise UserError(f"--spectrum cannot read '{path}': {e}")
        share = (power[1:] / power[1:].sum()).numpy()
        keys = key_frequencies(power)
        frequencies = np.arange(1, len(share) + 1)
        ax.bar(frequencies, share, color=["tab:orange" if k in keys else "tab:gray" for k in frequencies], width=0.8)
        for k in keys:
            ax.annotate(str(k), (k, share[k - 1]), ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{Path(path).name} (step {ckpt.get('step', '?')})\n{cfg.data.op} mod {cfg.data.p}, {order}: "
                     f"top {TOP_FREQUENCIES} hold {top_share(power):.0%}", fontsize=8)
        ax.set_xlabel("frequency (cycles around the residues)")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("share of embedding power")
    if title:
        fig.suptitle(title, fontsize=10)
    save(fig, out)
    return fig


def versus_points(dirs, versus, group_by, split="val"):
    """Each run as one point against a config key: {group: {x: [(best held-out accuracy, first
    step at 99% or None, last step logged), one per run (seed)]}}."""
    points = defaultdict(lambda: defaultdict(list))
    for d in dirs:
        config, records = read_run_config(d), read_metrics(d)
        full = [r for r in records if not r.get("subset") and f"{split}_acc" in r]
        if not full:
            raise UserError(f"'{d}' logs no {split}_acc; choose the held-out split with --split")
        x, group = config_value(config, versus), group_label(config, group_by)
        best = max(r[f"{split}_acc"] for r in full)
        points[group][x].append((best, first_step(full, f"{split}_acc", GROKKED), full[-1]["step"]))
    return points


def figure_versus(dirs, versus, group_by, out, title=None, split="val"):
    """Two panels against a config key (versus, e.g. data.train_frac), one line per value of
    group_by (e.g. data.op): the best held-out accuracy of each run, and its first step at 99%
    held-out accuracy. Every run is a point; the line goes through the mean of the best and the
    median of the steps. A run that never reached 99% is an x at its last step, and its line
    breaks there unless another seed at that point got there."""
    points = versus_points(dirs, versus, group_by, split)
    fig, (acc_ax, step_ax) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors, markers = plt.get_cmap("tab20"), "osD^vP*ph<>d8H"
    for i, group in enumerate(points):
        style = dict(color=colors(i % 20), marker=markers[i % len(markers)], ms=5, lw=1.3)
        xs = sorted(points[group])
        acc_ax.plot(xs, [100 * np.mean([b for b, _, _ in points[group][x]]) for x in xs], label=group, **style)
        steps = [[s for _, s, _ in points[group][x] if s is not None] for x in xs]
        step_ax.plot(xs, [np.median(s) if s else np.nan for s in steps], label=group, **style)
        missed = [(x, last) for x in xs for _, s, last in points[group][x] if s is None]
        if missed:
            step_ax.scatter(*zip(*missed), marker="x", color=style["color"], s=30, lw=1.2)
    acc_ax.set_ylabel(f"best {split} accuracy (%)")
    acc_ax.set_ylim(-2, 102)
    step_ax.set_ylabel(f"first step at {split} accuracy >= {GROKKED:.0%}  (x: never; its last step)")
    step_ax.set_yscale("log")
    for ax in (acc_ax, step_ax):
        ax.set_xlabel(versus)
        ax.grid(alpha=0.3)
    step_ax.legend(fontsize=8, title=", ".join(group_by), title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        fig.suptitle(title, fontsize=10)
    save(fig, out)
    return fig


def group_label(config, keys):
    return ", ".join(str(config_value(config, k)) for k in keys)


# What --out may end in: matplotlib's formats, less those that need more than matplotlib and
# Pillow (pgf: LaTeX; avif: a Pillow built with it) or are no image file (raw, rgba).
IMAGE_TYPES = set(FigureCanvasAgg.get_supported_filetypes()) - {"pgf", "avif", "raw", "rgba"}


def save(fig, out):
    """Write the figure whole or not at all (runlog.write_atomic), in the format its extension names."""
    out = Path(out)
    fig.tight_layout()
    write_atomic(out, lambda f: fig.savefig(f, dpi=110, format=out.suffix.lstrip(".").lower()), binary=True)
    plt.close(fig)
    print(f"wrote {out}")


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl and config.yaml); "
                        "with --spectrum, checkpoints (.pt files or run directories)")
    parser.add_argument("--out", required=True, help="output image, e.g. experiments/div97_paper/div97_paper.png")
    parser.add_argument("--group-by", metavar="KEY", nargs="+",
                        help="overlay one curve per value of this config key, e.g. train.weight_decay "
                             "(several keys: one curve per combination)")
    parser.add_argument("--split", default="val", choices=["val", "test"], help="held-out split for --group-by (default val)")
    parser.add_argument("--panels", action="store_true",
                        help="with --group-by: one panel per group, one line per seed (held-out accuracy)")
    parser.add_argument("--spectrum", action="store_true",
                        help="draw the token embedding's power per frequency of each checkpoint (number tokens)")
    parser.add_argument("--mark", metavar="STEP=TEXT", action="append",
                        help="a labelled vertical line at STEP, e.g. '1e5=paper: val rises' (repeatable; "
                             "not with --group-by or --spectrum)")
    parser.add_argument("--versus", metavar="KEY",
                        help="with --group-by: best held-out accuracy and steps to 99%% against this config key "
                             "(e.g. data.train_frac), one line per group")
    parser.add_argument("--title")
    args = parser.parse_args()
    check_output_file(args.out, "--out", IMAGE_TYPES)  # before the logs are read, not after
    marks = parse_marks(args.mark)
    if marks and (args.group_by or args.spectrum):
        raise UserError("--mark draws on the default figure of runs; leave out --group-by and --spectrum")
    if args.spectrum:
        if args.group_by or args.panels:
            raise UserError("--spectrum draws checkpoints; it takes neither --group-by nor --panels")
        figure_spectrum(args.runs, args.out, args.title)
        return
    if args.panels and not args.group_by:
        raise UserError("--panels needs --group-by KEY: it draws one panel per value of the key")
    for d in args.runs:
        if not Path(d).is_dir():
            raise UserError(f"'{d}' is not a run directory")
    if args.versus:
        if not args.group_by or args.panels:
            raise UserError("--versus needs --group-by KEY (one line per value) and takes no --panels")
        figure_versus(args.runs, args.versus, args.group_by, args.out, args.title, args.split)
    elif args.panels:
        figure_panels(args.runs, args.group_by, args.out, args.title, args.split)
    elif args.group_by:
        figure_groups(args.runs, args.group_by, args.out, args.title, args.split)
    else:
        figure_runs(args.runs, args.out, args.title, marks)


if __name__ == "__main__":
    run_cli(main)
