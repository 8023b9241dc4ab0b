"""Issue 15 and 14: run records that say what happened, inputs refused before anything is
lost, code that stays small, and the log readers that run without torch."""

import ast
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, run_script
from runtime import device_type, slow_bf16_note
from test_errors import TINY, assert_clean_error


def tiny_run(root, name="run", *extra):
    return run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", root / name,
                      f"--data.data_dir={root / 'data'}", *TINY, *extra)


@pytest.mark.slow  # several processes or a bf16 reference run: .ci/run runs it after the fast tests
def test_resume_records_its_command_and_what_it_changed(tmp_path):
    tiny_run(tmp_path, "run", "--train.checkpoint_interval=5")
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert {"git_commit", "git_dirty", "git_diff_sha256", "cpu", "cpu_capability"} <= set(env)
    run_script("train.py", "--resume", tmp_path / "run", "--train.max_steps=8", "--no-progress")
    resumes = [json.loads(l) for l in (tmp_path / "run" / "resumes.jsonl").read_text().splitlines()]
    assert len(resumes) == 1 and resumes[0]["changed"] == {"train.max_steps": [5, 8]}
    assert "--train.max_steps=8" in resumes[0]["command"]
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8


def test_resume_on_other_data_is_refused(tmp_path):
    tiny_run(tmp_path)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--resume", tmp_path / "run", "--data.data_seed=5", check=False)
    assert_clean_error(result, "data.data_seed=0", "data.data_seed=5")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def start_long_run(tmp_path):
    """A run that would take minutes, once it has written its first record."""
    command = [sys.executable, "train.py", "--config", "configs/div97_paper.yaml", "--out", str(tmp_path / "run"),
               f"--data.data_dir={tmp_path / 'data'}", *TINY[:-1], "--train.max_steps=1000000"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "run" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    return command, first


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_run_directory_in_use_is_refused_and_a_signal_checkpoints(tmp_path, stop):
    command, first = start_long_run(tmp_path)
    second = subprocess.run([*command, "--overwrite"], cwd=ROOT, capture_output=True, text=True)
    assert first.poll() is None, "the first run ended before the second started; the test proved nothing"
    assert_clean_error(second, "in use by another train.py")
    first.send_signal(stop)
    assert first.wait(timeout=60) == 130
    assert re.search(r"after [\d.]+s, \d+% of it evaluating; checkpoint saved", first.stderr.read())
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: every record once, in order
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < ckpt["step"] < 1000000 and ckpt["step"] >= steps[-1]


@pytest.mark.slow
def test_sweep_never_deletes_a_log_it_cannot_resume(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    sweep = {"base": "configs/div97_paper.yaml", "seeds": [0],
             "set": {k[2:].split("=")[0]: yaml.safe_load(k.split("=")[1]) for k in TINY if "=" in k}
             | {"data.data_dir": str(tmp_path / "data")}}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    run_script("sweep.py", out / "sweep.yaml", "--jobs", "1")
    run = out / "div97_paper_s0"
    (run / "summary.json").unlink()
    shutil.rmtree(run / "checkpoints")  # as in a fresh clone: logs are committed, checkpoints are not
    log = (run / "metrics.jsonl").read_text()
    again = run_script("sweep.py", out / "sweep.yaml", "--jobs", "1")
    assert "no checkpoint to resume" in again.stderr and (run / "metrics.jsonl").read_text() == log
    printed = run_script("sweep.py", out / "sweep.yaml", "--print-commands").stdout
    assert printed.startswith("# skip") and "--overwrite" not in printed
    destroy = run_script("sweep.py", out / "sweep.yaml", "--print-commands", "--rerun-destroying-logs").stdout
    assert "--overwrite" in destroy


@pytest.mark.slow
def test_every_committed_sweep_leaves_committed_logs_alone():
    sweeps = sorted(Path("experiments").glob("**/sweep.yaml"))
    assert sweeps
    for path in sweeps:
        printed = run_script("sweep.py", path, "--print-commands").stdout
        assert "--overwrite" not in printed, path


@pytest.fixture
def tiny_study(tmp_path):
    """A finished one-run sweep of tiny settings, in its own folder."""
    study = tmp_path / "study"
    study.mkdir()
    settings = {k[2:].split("=")[0]: yaml.safe_load(k.split("=")[1]) for k in TINY if "=" in k}
    sweep = {"base": "configs/div97_paper.yaml", "seeds": [0],
             "set": settings | {"data.data_dir": str(tmp_path / "data")}}
    (study / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    run_script("sweep.py", study / "sweep.yaml", "--jobs", "1")
    return study


@pytest.mark.parametrize("command", [["sweep.py", "sweep.yaml", "--summarize-only"],
                                     ["plot.py", "div97_paper_s0", "--out", "FIG"]])
def test_log_readers_run_without_torch(command, tiny_study, tmp_path):
    command = [str(tmp_path / "f.png") if c == "FIG" else c for c in command]
    command[1] = str(tiny_study / command[1])
    blocker = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", blocker, *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch" not in result.stderr


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in [*Path(".").glob("*.py"), *Path("tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_autocast_gets_a_device_type():
    assert device_type("cuda:1") == "cuda" and device_type("cpu") == "cpu" and device_type("mps") == "mps"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_gets_a_note(monkeypatch, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    note = slow_bf16_note("cpu", "bf16")
    assert (note is None) == native
    if note:
        assert "--train.precision=fp32" in note
    assert slow_bf16_note("cpu", "fp32") is None and slow_bf16_note("cuda:0", "bf16") is None


def test_plot_reads_a_log_still_being_written(tiny_study, tmp_path):
    run = tmp_path / "live"
    shutil.copytree(tiny_study / "div97_paper_s0", run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99999, "train_a')  # a record half written
    run_script("plot.py", run, "--out", tmp_path / "f.png")
    assert (tmp_path / "f.png").exists()
