"""scripts/report.py: texts rendered from run logs, and the check that the committed ones match."""

import json
import sys

from conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "scripts"))
import report  # noqa: E402

RUN = [{"step": 100, "train_acc": 0.5, "val_acc": 0.01, "weight_norm": 40.26},
       {"step": 200, "train_acc": 0.995, "val_acc": 0.4},
       {"step": 300, "train_acc": 1.0, "val_acc": 0.99828, "weight_norm": 44.75}]


def make_repo(tmp_path, template):
    run = tmp_path / "experiments" / "study" / "run_s0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RUN))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "NOTES.md.in").write_text(template)
    return tmp_path


def test_render_fills_numbers_from_the_log_and_check_finds_an_edit(tmp_path):
    root = make_repo(tmp_path, "train 99% at {{ first('study/run_s0', 'train_acc', 0.99) }}, "
                               "val {{ pct(value('study/run_s0', 'val_acc'), 2) }} at the end\n")
    run_script("scripts/report.py", "--root", root)
    text = (root / "NOTES.md").read_text()
    assert text.splitlines()[1] == "train 99% at 200, val 99.83% at the end"
    assert run_script("scripts/report.py", "--root", root, "--check").returncode == 0
    (root / "NOTES.md").write_text(text.replace("99.83%", "99.8%"))
    result = run_script("scripts/report.py", "--root", root, "--check", check=False)
    assert result.returncode == 1 and "NOTES.md line 2" in result.stderr and "99.83%" in result.stderr


def test_a_bare_float_or_a_missing_run_is_one_clear_error(tmp_path):
    root = make_repo(tmp_path, "{{ value('study/run_s0', 'val_acc') }}\n")
    result = run_script("scripts/report.py", "--root", root, check=False)
    assert result.returncode == 2 and "bare float" in result.stderr and "NOTES.md.in:1" in result.stderr
    (root / "report" / "NOTES.md.in").write_text("{{ first('study/nowhere', 'val_acc', 0.9) }}\n")
    result = run_script("scripts/report.py", "--root", root, check=False)
    assert result.returncode == 2 and "study/nowhere" in result.stderr
    assert not (root / "NOTES.md").exists()


def test_the_rounding_rule():
    facts = report.Facts(ROOT)
    assert facts.pct(0.99828, 1) == "99.8%" and facts.pct(0.99828, 2) == "99.83%"
    assert facts.pct(0.98184, 1, "floor") == "98.1%" and facts.pct(0.98119, 1, "ceil") == "98.2%"
    assert facts.pct(0.29, 0, "floor") == "29%"  # 0.29 * 100 is 28.999... in floats
    assert facts.span([4.46, 7.07], 1) == "4.4-7.1" and facts.span([2.0, 2.0]) == "2"
    assert facts.num(2239) == "2,239" and facts.num(493.6048, 2) == "493.60"


def test_pivot_and_where_pick_runs_by_their_config_keys(tmp_path):
    root = make_repo(tmp_path, "")
    for op, frac in [("+", 0.3), ("+", 0.5), ("s5", 0.5)]:
        run = root / "experiments" / "grid" / f"{op}{frac}"
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps({"step": 10, "val_acc": frac}) + "\n")
        (run / "config.yaml").write_text(f"data: {{op: '{op}', train_frac: {frac}}}\n")
    table = report.Facts(root).pivot("grid", "data.op", "data.train_frac", lambda r: str(r[-2:]))
    assert table.splitlines() == ["| data.op | train_frac 0.3 | train_frac 0.5 |", "|---|---|---|",
                                  "| `+` | .3 | .5 |", "| `s5` | - | .5 |"]
    facts = report.Facts(root)
    assert facts.where("grid", "data.train_frac", {"data.op": "+"}) == [0.3, 0.5]
    assert facts.where("grid", "data.op", {"data.train_frac": 0.5}) == ["+", "s5"]
    assert facts.where("grid", "data.train_frac", {}, lambda r: facts.best(r, "val_acc") > 0.4) == [0.5]
    more = root / "experiments" / "grid_dense" / "+0.4"  # a study that extends the grid
    more.mkdir(parents=True)
    (more / "metrics.jsonl").write_text(json.dumps({"step": 10, "val_acc": 0.4}) + "\n")
    (more / "config.yaml").write_text("data: {op: '+', train_frac: 0.4}\n")
    assert facts.where("grid*", "data.train_frac", {"data.op": "+"}) == [0.3, 0.4, 0.5]
    assert facts.where("grid", "data.train_frac", {"data.op": "+"}) == [0.3, 0.5]


def test_the_committed_report_is_what_the_logs_render():
    result = run_script("scripts/report.py", "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_the_report_stays_short():
    assert len((ROOT / "REPORT.md").read_text().splitlines()) <= 400  # issue 33: the brief asks for a short report
