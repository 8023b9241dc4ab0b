"""Render the report (and every other templated text) from the logs, so that no number can drift.

    python scripts/report.py            # write REPORT.md, README.md and experiments/*/README.md
    python scripts/report.py --check    # exit 1 at the first difference from what the logs render

A template is a markdown file ending in .md.in: report/NAME.md.in renders to NAME.md at the repo
root, any other PATH.md.in to PATH.md beside it. In a template, {{ expression }} is replaced by
its value: an expression over the facts below, which read the run logs under experiments/ (a
run is named by its folder there, like 'div97_main/div97_s0'). Everything else is copied as it is.
A number typed by hand is allowed only where no log holds it, with its source beside it.

Rounding follows one rule, stated in the report once: a value is shown rounded to the nearest
digit shown; a floor ("at least", "never below") is rounded down and a ceiling ("at most") up,
so neither claims more than the log says; a range lo-hi rounds lo down and hi up, so it covers
both ends. An expression that gives a bare float is an error: each number says how it rounds.

Reads logs only (no torch); takes seconds.
"""

import argparse
import ast
import functools
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runlog import UserError, first_step, grokking_summary, read_metrics, run_cli  # noqa: E402

PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")


class Facts:
    """The functions a template may call, over the logs of one repo (root)."""

    def __init__(self, root):
        self.root = Path(root)

    # ---- reading the logs
    def _dir(self, run):
        path = self.root / "experiments" / run
        if not (path / "metrics.jsonl").is_file():
            raise UserError(f"no run log at 'experiments/{run}' (metrics.jsonl)")
        return path

    @functools.lru_cache(maxsize=None)
    def records(self, run):
        """A run's evaluations; only the full ones where a run scored a subset at some."""
        return [r for r in read_metrics(self._dir(run)) if not r.get("subset")]

    def value(self, run, key, step=None):
        """key at a logged step (default: the last evaluation)."""
        records = self.records(run)
        record = records[-1] if step is None else next((r for r in records if r["step"] == step), None)
        if record is None or key not in record:
            raise UserError(f"experiments/{run} logs no {key} at step {step}")
        return record[key]

    def first(self, run, key, level):
        """First logged step with key >= level; an error if it never gets there (say so with reached())."""
        step = first_step(self.records(run), key, level)
        if step is None:
            raise UserError(f"experiments/{run} never reaches {key} >= {level}")
        return step

    def reached(self, run, key, level):
        return first_step(self.records(run), key, level) is not None

    def best(self, run, key):
        return max(r[key] for r in self.records(run) if key in r)

    def lowest_after(self, run, key, step):
        return min(r[key] for r in self.records(run) if r["step"] >= step and key in r)

    def steps(self, run):
        return [r["step"] for r in self.records(run)]

    def grok(self, run, key, heldout=None):
        """A number of runlog.grokking_summary (what sweep.py tabulates) for one run."""
        summary = grokking_summary(self.records(run), heldout)
        if key not in summary:
            raise UserError(f"grokking_summary has no '{key}'; it has: {', '.join(summary)}")
        return summary[key]

    def summary_json(self, run, key):
        return json.loads((self._dir(run) / "summary.json").read_text())[key]

    def runs(self, study, pattern="*"):
        """The run folders of a study, sorted, relative to experiments/; study may be a pattern
        ('ops_fraction*': a grid and the studies that extend it)."""
        experiments = self.root / "experiments"
        return sorted(str(p.parent.relative_to(experiments)) for p in experiments.glob(f"{study}/{pattern}/metrics.jsonl"))

    def table(self, *sweeps, columns=None):
        """The table `python sweep.py SWEEP... --summarize-only [--columns ...]` prints."""
        import sweep

        specs = [sweep.load_sweep(self.root / "experiments" / s / "sweep.yaml") for s in sweeps]
        tables = [sweep.summary_table(spec, sweep.plan(spec)) for spec in specs]
        cols, rows = sweep.merge_tables(tables, [spec["set"] for spec in specs])
        if columns:
            cols, rows = sweep.select_columns(cols, rows, columns)
        return sweep.format_table(cols, rows)

    def json_file(self, path, *keys):
        """A value of a committed JSON file (a data set's meta.json, say): json_file(path, 'counts', 'train')."""
        value = json.loads((self.root / path).read_text())
        for key in keys:
            value = value[key]
        return value

    def setting(self, run, dotted):
        """A config value of a run (its config.yaml): setting(run, 'data.train_frac')."""
        from runlog import read_run_config

        section, key = dotted.split(".")
        return read_run_config(self._dir(run))[section][key]

    def pivot(self, study, row_key, column_key, show, pattern="*", row_order=None):
        """A markdown table of a study's runs: a row per value of row_key, a column per value of
        column_key (both config keys), each cell show(run); '-' where no run has that pair, several
        runs (seeds) joined by ' / '."""
        cells, rows, columns = {}, [], []
        for run in self.runs(study, pattern):
            r, c = self.setting(run, row_key), self.setting(run, column_key)
            rows += [r] if r not in rows else []
            columns += [c] if c not in columns else []
            cells.setdefault((r, c), []).append(show(run))
        rows = [r for r in (row_order or rows) if r in rows]
        columns = sorted(columns)
        lines = ["| " + " | ".join([row_key, *[f"{column_key.split('.')[-1]} {c}" for c in columns]]) + " |",
                 "|" + "---|" * (len(columns) + 1)]
        lines += ["| " + " | ".join([f"`{r}`", *[" / ".join(cells.get((r, c), ["-"])) for c in columns]]) + " |"
                  for r in rows]
        return "\n".join(lines)

    def where(self, study, key, match, keep=None):
        """The distinct values of config key (sorted) over a study's runs whose config has every
        value in match ({'data.op': '+'}) and, given keep, for which keep(run) is true:
        where('ops_fraction', 'data.train_frac', {'data.op': '+'}, lambda r: grok(r, 'grokked', 'val'))."""
        chosen = [run for run in self.runs(study)
                  if all(self.setting(run, k) == v for k, v in match.items()) and (keep is None or keep(run))]
        return sorted({self.setting(run, key) for run in chosen})

    def text(self, path):
        """A committed text file of the notebook (a bench output, say), whole."""
        return (self.root / path).read_text().rstrip("\n")

    # ---- showing numbers (the rounding rule above)
    @staticmethod
    def _round(x, digits, how):
        scale = 10 ** digits
        return {"near": round, "floor": math.floor, "ceil": math.ceil}[how](x * scale) / scale

    def num(self, x, digits=0, how="near"):
        """A number with thousands separators: num(2239) '2,239'; num(0.4567, 2, 'floor') '0.45'."""
        if how != "near":
            # a float just under an integer (0.29 * 100 = 28.999...) must not floor one digit low
            x = float(f"{x:.12g}")
        value = self._round(x, digits, how)
        return f"{value:,.{digits}f}"

    def pct(self, x, digits=1, how="near"):
        """A fraction as a percentage: pct(0.99828) '99.8%', pct(0.99828, 1, 'floor') '99.8%'."""
        return self.num(100 * x, digits, how) + "%"

    def span(self, values, digits=0, percent=False):
        """'lo-hi' of values, lo rounded down and hi up (one value if they show alike)."""
        values = list(values)
        if not values:
            raise UserError("span() of no values")
        show = self.pct if percent else self.num
        lo, hi = show(min(values), digits, "floor"), show(max(values), digits, "ceil")
        return lo if lo == hi else f"{lo}-{hi}"

    def median(self, values):
        return statistics.median(list(values))

    def namespace(self):
        names = ["value", "first", "reached", "best", "lowest_after", "steps", "grok", "summary_json", "runs",
                 "table", "text", "num", "pct", "span", "median", "records", "json_file", "setting", "pivot", "where"]
        builtins = {f.__name__: f for f in (min, max, len, sum, sorted, abs, round, zip, range, list, any, all,
                                            str, int, float, enumerate, dict, set, tuple)}
        return {"__builtins__": builtins, **{n: getattr(self, n) for n in names}}


def shown(value, where):
    if isinstance(value, bool) or isinstance(value, float):
        raise UserError(f"{where} gives a bare {type(value).__name__} ({value!r}); show it with num(), pct() "
                        "or span(), which state how it rounds")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, str):
        return value
    raise UserError(f"{where} gives a {type(value).__name__}, not text or a whole number")


def render(template, facts, name):
    """The template's text with every {{ expression }} replaced by its value."""
    namespace = facts.namespace()
    out = []
    for number, line in enumerate(template.splitlines(keepends=True), 1):
        def fill(match):
            expression = match[1].strip()
            where = f"{name}:{number} {{{{ {expression} }}}}"
            try:
                ast.parse(expression, mode="eval")
                value = eval(expression, namespace)  # the template is the repo's own text
            except UserError as e:
                raise UserError(f"{where}: {e}")
            except Exception as e:
                raise UserError(f"{where}: {type(e).__name__}: {e}")
            return shown(value, where)
        out.append(PLACEHOLDER.sub(fill, line))
    return "".join(out)


def targets(root):
    """(template, the file it renders to) for every template of the repo, in a fixed order."""
    root = Path(root)
    pairs = [(t, root / t.name.removesuffix(".in")) for t in sorted((root / "report").glob("*.md.in"))]
    pairs += [(t, t.with_name(t.name.removesuffix(".in"))) for t in sorted((root / "experiments").rglob("*.md.in"))]
    return pairs


def banner(template, root):
    source = template.relative_to(root)
    return (f"<!-- Rendered from {source} by `python scripts/report.py`, with every number read from the logs: "
            "edit the template, not this file. -->\n")


def first_difference(committed, rendered):
    """(line number, committed line, rendered line) of the first line that differs, or None."""
    a, b = committed.splitlines(), rendered.splitlines()
    for number in range(max(len(a), len(b))):
        left = a[number] if number < len(a) else "<end of file>"
        right = b[number] if number < len(b) else "<end of file>"
        if left != right:
            return number + 1, left, right
    return None if committed == rendered else (len(a) + 1, "<newline>", "<newline>")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the first line where a committed file differs from "
                             "what its template renders from the logs, 0 if none does")
    parser.add_argument("--root", default=str(ROOT), help="the repo root (default: this script's repo)")
    parser.add_argument("--only", nargs="+", metavar="TEMPLATE", help="only these templates (paths of .md.in files)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    facts = Facts(root)
    pairs = targets(root)
    if args.only:
        wanted = {Path(t).resolve() for t in args.only}
        unknown = wanted - {t.resolve() for t, _ in pairs}
        if unknown:
            raise UserError(f"'{sorted(unknown)[0]}' is not a template of this repo (report/*.md.in, experiments/**/*.md.in)")
        pairs = [(t, out) for t, out in pairs if t.resolve() in wanted]
    if not pairs:
        raise UserError(f"no templates (*.md.in) under '{root / 'report'}' or '{root / 'experiments'}'")
    for template, out in pairs:
        text = banner(template, root) + render(template.read_text(), facts, str(template.relative_to(root)))
        if args.check:
            committed = out.read_text() if out.is_file() else ""
            difference = first_difference(committed, text)
            if difference:
                number, left, right = difference
                print(f"{out.relative_to(root)} line {number} is not what the logs render; run "
                      f"python scripts/report.py\n  committed: {left}\n  rendered:  {right}", file=sys.stderr)
                return 1
            continue
        if not out.is_file() or out.read_text() != text:
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(out)
            print(f"wrote {out.relative_to(root)}")
    if args.check:
        print(f"{len(pairs)} rendered files match the logs")
    return 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
