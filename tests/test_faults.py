"""Faults a user meets (issue 35): Ctrl-C at any moment, a full disk, a crash mid-write, a second
process. Nothing already written is lost or left half-written, and each fault ends in one clear line."""

import fcntl
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import train
from checkpoint import load_checkpoint
from conftest import ROOT, run_in_this_process, run_script, with_overrides
from runlog import UserError, float_arg, int_arg
from test_errors import assert_clean_error

CONFIG = ["--config", "configs/div97_paper.yaml"]


def tiny(tmp_path, name="run", *extra):
    return with_overrides(["--out", str(tmp_path / name), "--no-progress", "--data.op=+", "--data.p=7",
                           "--data.train_frac=0.6", "--data.val_frac=0.2", f"--data.data_dir={tmp_path / 'data'}",
                           "--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2", "--model.d_ff=64",
                           "--train.batch_size=16", "--train.lr=3e-3", "--train.eval_schedule=fixed",
                           "--train.eval_interval=5", "--train.threads=1"], *extra)


def records(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "elapsed"} for row in rows]


def leftovers(folder):
    """Temp files that a write cut short would leave."""
    return sorted(str(p) for p in Path(folder).rglob("*.tmp"))


# ----------------------------------------------------------------------------- 2, 3: Ctrl-C in train.py


def test_ctrl_c_during_the_final_checkpoint_keeps_the_run(tmp_path, monkeypatch):
    saved = train.save_checkpoint

    def save_then_interrupted(path, state):  # Ctrl-C lands while the last checkpoint is written
        if state["step"] == 10:
            os.kill(os.getpid(), signal.SIGINT)
        saved(path, state)

    monkeypatch.setattr(train, "save_checkpoint", save_then_interrupted)
    train.main([*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=10")])
    assert load_checkpoint(tmp_path / "run")["step"] == 10
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 10
    assert leftovers(tmp_path) == []


def test_ctrl_c_while_a_run_starts_leaves_a_run_that_resumes(tmp_path, monkeypatch):
    train.main([*CONFIG, *tiny(tmp_path, "whole", "--train.max_steps=10")])
    described = train.describe_environment

    def interrupted(device):  # Ctrl-C while the git state is read, before config.yaml is written
        os.kill(os.getpid(), signal.SIGINT)
        return described(device)

    monkeypatch.setattr(train, "describe_environment", interrupted)
    with pytest.raises(SystemExit) as stopped:
        train.main([*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=10")])
    assert stopped.value.code == 130
    monkeypatch.setattr(train, "describe_environment", described)
    train.main(["--resume", str(tmp_path / "run"), "--no-progress"])
    assert records(tmp_path / "run") == records(tmp_path / "whole")


def test_a_run_killed_as_it_started_is_started_again(tmp_path):
    # what a kill (or a full disk) right after the first files leaves: config.yaml and command.txt only
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: run\n")
    (tmp_path / "run" / "command.txt").write_text("python train.py ...\n")
    (tmp_path / "run" / "env.json.tmp").write_text("{")
    train.main([*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=5")])
    assert records(tmp_path / "run")[-1]["step"] == 5 and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 4, 5, 6: resume


def test_resume_after_a_crash_mid_write_of_the_log(tmp_path):
    train.main([*CONFIG, *tiny(tmp_path, "whole", "--train.max_steps=20")])
    train.main([*CONFIG, *tiny(tmp_path, "cut", "--train.max_steps=10")])
    # A crash after the checkpoint at step 10: a record past it, then a line cut in half.
    log = tmp_path / "cut" / "metrics.jsonl"
    (tmp_path / "cut" / "summary.json").unlink()
    later = json.dumps({**records(tmp_path / "whole")[3], "elapsed": 1.0})
    log.write_text(log.read_text() + later + "\n" + later[:25])
    train.main(["--resume", str(tmp_path / "cut"), "--train.max_steps=20", "--no-progress"])
    assert records(tmp_path / "cut") == records(tmp_path / "whole")


def test_a_damaged_log_stops_the_resume_before_anything_is_touched(tmp_path):
    train.main([*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=10")])
    log = tmp_path / "run" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[1][:10], *lines[2:]]) + "\n")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(UserError, match="line 2 is not JSON"):
        train.main(["--resume", str(tmp_path / "run"), "--train.max_steps=20", "--no-progress"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


def test_resuming_a_run_its_stop_rule_ended_says_how_to_train_on(tmp_path):
    rule = ["--train.stop_val_acc=0.0", "--train.stop_patience=2"]
    train.main([*CONFIG, *tiny(tmp_path, "run", *rule, "--train.max_steps=100")])
    assert records(tmp_path / "run")[-1]["step"] == 5
    summary = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(UserError, match="ended by its stop rule at step 5.*--train.stop_patience=0"):
        train.main(["--resume", str(tmp_path / "run"), "--train.max_steps=20", "--no-progress"])
    assert (tmp_path / "run" / "summary.json").read_text() == summary  # still finished
    assert not (tmp_path / "run" / "resumes.jsonl").exists()
    train.main(["--resume", str(tmp_path / "run"), "--train.max_steps=20", "--train.stop_patience=0", "--no-progress"])
    assert records(tmp_path / "run")[-1]["step"] == 20


@pytest.mark.parametrize("extra, needle", [
    (["--train.max_steps=20"], "already finished at step 10"),  # nothing left to train
    (["--train.max_steps=5"], "cannot go back"),  # fewer steps than done
    (["--seed=1"], "--seed cannot change on a resume"),
    (["--train.max_steps=30", "--train.max_steps=40"], "given twice"),
    (["--out", "elsewhere"], "--out cannot take it elsewhere"),
    (["--overwrite"], "cannot go with --resume"),
])
def test_resume_overrides_that_cannot_take_effect_are_refused(tmp_path, extra, needle):
    train.main([*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=10")])
    if needle.startswith("already"):
        extra = ["--train.max_steps=10"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(UserError, match=needle):
        train.main(["--resume", str(tmp_path / "run"), "--no-progress", *extra])
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
    assert not (tmp_path / "elsewhere").exists()


def test_resume_of_a_run_without_a_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: run\n")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(UserError, match="no checkpoint to resume.*--overwrite"):
        train.main(["--resume", str(tmp_path / "run")])


# ----------------------------------------------------------------------------- 7: someone else's files


def test_generate_data_leaves_a_users_folder_alone(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.txt").write_text("notes")
    result = run_script("generate_data.py", "--op", "+", "--p", "7", "--out", tmp_path / "d", check=False)
    assert_clean_error(result, str(tmp_path / "d"), "no meta.json")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["train.txt"]
    assert (tmp_path / "d" / "train.txt").read_text() == "notes"
    with pytest.raises(UserError, match="no meta.json"):  # train.py, which writes missing data sets, too
        train.main([*CONFIG, *tiny(tmp_path, "run", f"--data.data_dir={tmp_path / 'd'}")])
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 8: a full disk


def limited_to(size):
    """A child process whose files cannot grow past size bytes: writes fail as on a full disk
    (EFBIG where a full disk gives ENOSPC; Python ignores SIGXFSZ, so the write returns the error)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def run_limited(size, *args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=limited_to(size), env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.slow  # several processes or a bf16 reference run: .ci/run runs it after the fast tests
def test_a_run_whose_first_write_fails_leaves_nothing_behind(tmp_path):
    run_script("generate_data.py", "--op", "+", "--p", "7", "--train-frac", "0.6", "--val-frac", "0.2",
               "--out", tmp_path / "data")
    result = run_limited(600, "train.py", *CONFIG, *tiny(tmp_path, "run", "--train.max_steps=5"))
    assert_clean_error(result, str(tmp_path / "run" / "config.yaml"), "File too large")
    # nothing but the run's first file (command.txt), so the same command takes the folder over once there is room
    assert not (tmp_path / "run").exists() or [p.name for p in (tmp_path / "run").iterdir()] == ["command.txt"]
    run_script("train.py", *CONFIG, *tiny(tmp_path, "run", "--train.max_steps=5"))


@pytest.mark.slow  # several processes or a bf16 reference run: .ci/run runs it after the fast tests
def test_a_checkpoint_that_does_not_fit_names_the_file_and_keeps_the_last(tmp_path):
    run_script("generate_data.py", "--op", "+", "--p", "7", "--train-frac", "0.6", "--val-frac", "0.2",
               "--out", tmp_path / "data")
    result = run_limited(40_000, "train.py", *CONFIG, *tiny(tmp_path, "run", "--train.max_steps=5"))
    assert_clean_error(result, str(tmp_path / "run" / "checkpoints" / "last.pt"), "File too large", "--overwrite")
    assert leftovers(tmp_path) == []
    assert records(tmp_path / "run")[-1]["step"] == 5  # the log is whole


@pytest.mark.slow
def test_full_disk_for_every_command_is_one_line(tmp_path):
    run_script("train.py", *CONFIG, *tiny(tmp_path, "run", "--train.max_steps=5"))
    for size, args in ((1000, ["generate_data.py", "--op", "+", "--p", "97", "--out", tmp_path / "d"]),
                       (100, ["evaluate.py", "--checkpoint", tmp_path / "run", "--json", tmp_path / "e.json"]),
                       (1000, ["plot.py", tmp_path / "run", "--out", tmp_path / "p.png"])):
        result = run_limited(size, *args)
        assert_clean_error(result, "File too large", str(tmp_path))
    assert leftovers(tmp_path) == [] and not (tmp_path / "d").exists()
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_a_real_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 300 kB tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'}); "
                    "the RLIMIT_FSIZE tests above stand in for it")
    try:
        run_script("generate_data.py", "--op", "+", "--p", "7", "--train-frac", "0.6", "--val-frac", "0.2",
                   "--out", disk / "data")
        result = run_script("train.py", *CONFIG, *tiny(disk, "run", "--train.max_steps=1000",
                                                       "--train.checkpoint_interval=1"), check=False)
        assert_clean_error(result, "No space left on device", str(disk / "run"))
        assert leftovers(disk) == []
    finally:
        subprocess.run(["umount", str(disk)])


# ----------------------------------------------------------------------------- output paths, checked first


@pytest.mark.parametrize("make, args, needles", [
    (lambda t: (t / "f").write_text("x"), ["plot.py", "configs", "--out", "{t}/f/p.png"], ["is a file, not a folder"]),
    (lambda t: None, ["plot.py", "configs", "--out", "{t}/p.xyz"], ["must end in one of", ".png"]),
    (lambda t: None, ["plot.py", "configs", "--out", "{t}"], ["is a folder"]),
    (lambda t: (t / "f").write_text("x"), ["evaluate.py", "--checkpoint", "checkpoints/sanity.pt", "--json", "{t}/f/e.json"],
     ["is a file, not a folder"]),
    (lambda t: (t / "f").write_text("x"), ["export_checkpoint.py", "checkpoints/sanity.pt", "{t}/f/x.pt"],
     ["is a file, not a folder"]),
    (lambda t: (t / "f").write_text("x"), ["generate_data.py", "--op", "+", "--p", "7", "--out", "{t}/f/d"],
     ["is a file, not a folder"]),
])
def test_output_paths_are_checked_before_any_work(tmp_path, make, args, needles):
    make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = run_in_this_process(*[a.format(t=tmp_path) for a in args])
    assert_clean_error(result, *needles)
    assert "wrote" not in result.stdout and sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("script", ["train.py", "plot.py", "generate_data.py"])
def test_a_folder_without_write_permission(tmp_path, script, monkeypatch):
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: let the check see the folder as a user would
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "ro" and access(path, mode))
    args = {"train.py": [*CONFIG, *tiny(tmp_path / "ro", "run")], "plot.py": ["configs", "--out", tmp_path / "ro/p.png"],
            "generate_data.py": ["--op", "+", "--p", "7", "--out", tmp_path / "ro" / "d"]}[script]
    result = run_in_this_process(script, *args)
    assert_clean_error(result, "no permission", str(tmp_path / "ro"))
    assert list((tmp_path / "ro").iterdir()) == []


# ----------------------------------------------------------------------------- 10, and numbers on command lines


def test_an_empty_checkpoint_file_is_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("text", ["²", "٣", "1e3", "1.5", "", "-1", str(2**63), "9" * 400, "9" * 5000, "-" + "9" * 5000],
                         ids=lambda text: text if len(text) < 25 else f"{text[:3]}...({len(text)} chars)")
def test_whole_numbers_on_a_command_line(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        int_arg()(text)


def test_numbers_on_a_command_line_that_are_fine():
    assert int_arg()("12") == 12 and int_arg(-5)(" -3") == -3 and int_arg()(str(2**63 - 1)) == 2**63 - 1
    assert float_arg(0)("1e-3") == 0.001
    import argparse

    for text in ("nan", "inf", "-1", "1e400", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            float_arg(0)(text)


@pytest.mark.parametrize("args, needles", [
    (["inference.py", "--checkpoint", "checkpoints/div97.pt", "--prompt", "1/2=", "--top-k", "²"], ["--top-k", "'²'"]),
    (["inference.py", "--checkpoint", "checkpoints/div97.pt", "--prompt", "1/2=", "--seed", "9" * 30], ["--seed", "out of range"]),
    (["inference.py", "--checkpoint", "checkpoints/div97.pt", "--temperature", "nan"], ["--temperature", "finite"]),
    (["inference.py"], ["required", "--checkpoint"]),
    (["generate_data.py", "--op", "+", "--p", "٣"], ["--p"]),
    (["generate_data.py", "--op", "+", "--p", "7", "--train-frac", "inf"], ["--train-frac"]),
    (["evaluate.py", "--checkpoint", "checkpoints/sanity.pt", "--show-mistakes", "-1"], ["--show-mistakes"]),
    (["sweep.py", "experiments/ablate_wd/sweep.yaml", "--jobs", "0"], ["--jobs"]),
    (["plot.py", "configs", "--out", "x.png", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["train.py", "--config", "configs/div97.yaml", "--seed=99999999999999999999999"], ["seed", "too large"]),
    (["train.py", "--config", "configs/div97.yaml", "--train.eval_schedule=fixed", "--train.eval_interval=1",
      "--train.max_steps=100000000000"], ["evaluations"]),
    (["train.py", "--config", "configs/div97.yaml", "--model.n_embd=1000000"], ["parameters"]),
    (["train.py", "--config", "configs/div97.yaml", "--train.lr=1", "--train.lr=2"], ["given twice"]),
    (["train.py"], ["give --config FILE"]),
    # longer than int() reads (4,300 digits): still one short line, the number shown by its start
    (["train.py", "--config", "configs/div97.yaml", "--seed=" + "9" * 5000], ["seed", "5000 characters"]),
    (["train.py", "--config", "configs/div97.yaml", "--train.lr=" + "9" * 5000], ["train.lr", "too long"]),
    (["generate_data.py", "--op", "+", "--p", "9" * 5000], ["--p", "out of range"]),
])
def test_command_line_errors_are_one_line(args, needles, tmp_path):
    out = ["--out", tmp_path / "o"] if args[0] == "train.py" and len(args) > 1 else []
    result = run_in_this_process(*args, *out)
    assert_clean_error(result, *needles)
    assert len(result.stderr) < 400, result.stderr[:400]
    assert not (tmp_path / "o").exists()


def test_a_config_file_with_a_number_too_long_to_read_is_one_line(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text(f"base: {ROOT / 'configs' / 'div97.yaml'}\nseed: {'9' * 5000}\n")
    result = run_in_this_process("train.py", "--config", config, "--out", tmp_path / "o")
    assert_clean_error(result, "big.yaml", "too long")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- 9, 1: sweeps


def sweep_file(tmp_path, seeds, **extra):
    folder = tmp_path / "study"
    folder.mkdir(exist_ok=True)
    sweep = {"base": "configs/div97_paper.yaml", "seeds": seeds,
             "set": {"data.op": "+", "data.p": 7, "data.train_frac": 0.6, "model.n_layer": 1, "model.n_embd": 32,
                     "model.n_head": 2, "model.d_ff": 64, "train.batch_size": 16, "train.eval_schedule": "fixed",
                     "train.eval_interval": 50, "train.log_checkpoints": False, **extra}}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return folder / "sweep.yaml"


def test_a_sweep_with_a_failed_run_exits_non_zero(tmp_path):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep me")  # each run refuses this data folder
    path = sweep_file(tmp_path, [0], **{"data.data_dir": str(tmp_path / "theirs"), "train.max_steps": 5})
    result = run_script("sweep.py", path, "--jobs", "1", check=False)
    assert result.returncode == 1 and "FAILED" in result.stderr and "1 runs failed" in result.stderr
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep me"


def test_one_sweep_per_study_at_a_time(tmp_path):
    path = sweep_file(tmp_path, [0], **{"train.max_steps": 5})
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a sweep.py running this study holds it
        result = run_script("sweep.py", path, "--jobs", "1", check=False)
    finally:
        os.close(fd)
    assert_clean_error(result, "another sweep.py", str(path.parent))
    assert sorted(p.name for p in path.parent.iterdir()) == ["sweep.yaml"]


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_says_how_to_go_on(tmp_path):
    path = sweep_file(tmp_path, [0, 1, 2, 3], **{"train.max_steps": 100_000, "train.checkpoint_interval": 50,
                                                 "data.data_dir": str(tmp_path / "data")})
    proc = subprocess.Popen([sys.executable, "sweep.py", str(path), "--jobs", "1"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = path.parent / "div97_paper_s0" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    started = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a sweep that went on would start every queued run: stop it, and fail
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and time.time() - started < 30, err
    assert "interrupted. 0 of 4 runs finished, 0 failed, 1 stopped with a checkpoint (div97_paper_s0), 3 not started" in err
    assert "Run the same command again" in err and "Traceback" not in err
    assert not (path.parent / "div97_paper_s1").exists()  # no queued run started after the Ctrl-C
    step = load_checkpoint(path.parent / "div97_paper_s0")["step"]
    assert 0 < step < 100_000


# ----------------------------------------------------------------------------- the guarantees, end to end


@pytest.mark.slow
def test_ctrl_c_every_50_ms_loses_nothing(tmp_path, monkeypatch):
    """Ctrl-C at every moment of a run that checkpoints every step: attempt i is interrupted
    50 ms x i after it starts (in its start-up, its steps, its last writes), the next attempt
    resumes it (or starts it again), and the log ends as an uninterrupted run's does."""
    args = [*CONFIG, *tiny(tmp_path, "run", "--train.max_steps=40", "--train.checkpoint_interval=1",
                           "--train.log_checkpoints=false")]
    train.main([*args[:3], str(tmp_path / "whole"), *args[4:]])
    monkeypatch.setattr(train, "describe_environment", lambda device: {"device": device})  # no git in the loop
    inside = [False]

    def interrupt(signum, frame):  # Python's own handler, but only while an attempt runs
        if inside[0]:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    outcomes, finished = [], tmp_path / "run" / "summary.json"
    try:
        while not finished.exists() and len(outcomes) < 200:
            resume = (tmp_path / "run" / "checkpoints" / "last.pt").exists()
            timer = threading.Timer(0.05 * (len(outcomes) + 1), os.kill, (os.getpid(), signal.SIGINT))
            try:
                inside[0] = True
                timer.start()
                train.main(["--resume", str(tmp_path / "run"), "--no-progress"] if resume else args)
                outcomes.append("finished")
            except SystemExit as e:  # train.py took the signal, saved a checkpoint and stopped
                assert e.code == 130
                outcomes.append("stopped")
            except KeyboardInterrupt:  # before train.py took the signal over: nothing written yet
                outcomes.append("interrupted")
            finally:
                inside[0] = False
                timer.cancel()
                timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finished.exists() and "stopped" in outcomes, outcomes
    assert records(tmp_path / "run") == records(tmp_path / "whole")
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_exactly_or_says_why_not(tmp_path):
    common = ["train.py", *CONFIG, "--train.checkpoint_interval=1", "--train.log_checkpoints=false"]
    run_script(*common, *tiny(tmp_path, "whole", "--train.max_steps=300"))
    fresh = [*common, *tiny(tmp_path, "run", "--train.max_steps=300")]
    rng = random.Random(0)
    refused = 0
    for _ in range(4):
        if (tmp_path / "run" / "summary.json").exists():
            break
        if (tmp_path / "run" / "checkpoints" / "last.pt").exists():
            command = ["train.py", "--resume", tmp_path / "run", "--no-progress"]
        else:
            command = fresh
            probe = run_script(*fresh, check=False) if (tmp_path / "run" / "metrics.jsonl").exists() else None
            if probe is not None and probe.returncode != 0:  # a log but no checkpoint yet: one line, then --overwrite
                assert_clean_error(probe, "already holds a run", "--overwrite")
                refused += 1
                command = [*fresh, "--overwrite"]
        proc = subprocess.Popen([sys.executable, *map(str, command)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if (tmp_path / "run" / "summary.json").exists():
        pass
    elif (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        run_script("train.py", "--resume", tmp_path / "run", "--no-progress")
    else:
        run_script(*fresh, "--overwrite")
    assert records(tmp_path / "run") == records(tmp_path / "whole")
    assert (tmp_path / "run" / "summary.json").exists() and refused <= 4


def test_runs_starting_side_by_side_share_one_new_data_set(tmp_path):
    """A sweep starts its seeds at once on one data set that does not exist yet: each run writes it
    in a private folder and renames it into place, so neither sees half-written files."""
    procs = [subprocess.Popen([sys.executable, "train.py", *CONFIG, *tiny(tmp_path, f"run{i}", "--train.max_steps=3")],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no private folder left
    assert (tmp_path / "data" / "meta.json").is_file()


def test_a_folder_holding_only_a_users_config_is_not_taken_over(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("# my notes\nseed: 3\n")
    result = run_script("train.py", *CONFIG, *tiny(tmp_path, "run", "--train.max_steps=3"), check=False)
    assert_clean_error(result, "holds files but no run")
    assert (tmp_path / "run" / "config.yaml").read_text() == "# my notes\nseed: 3\n"
