"""Every command the README gives runs as written, in a fast form (a few steps, --summarize-only,
--print-commands, --help), so that a stale command fails here rather than for a new user."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SKIP = {("pip", "install"), ("python", "-m")}  # the set-up commands: CI runs them itself


def readme_commands():
    """The README's commands in the order they appear: each line of its bash blocks (continuation
    lines joined, comments dropped) and each inline `python ...` in its text and tables."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block, inline in re.findall(r"```bash\n(.*?)```|`(python [^`]+)`", text, flags=re.S):
        for line in (block.replace("\\\n", " ").splitlines() if block else [inline]):
            words = shlex.split(line, comments=True)
            if words and tuple(words[:2]) not in SKIP:
                commands.append(words)
    return commands


def fast_form(words, tmp):
    """The same command, cheap: runs/ and output files moved under tmp, training cut to a few
    steps, sweeps only printed or summarised, shell scripts only parsed."""
    words = [str(tmp / w) if w.startswith("runs/") else w for w in words]
    if words[0] == "bash":
        return ["bash", "-n", *words[1:]]
    assert words[0] == "python", f"README command not covered by this test: {words}"
    script, args = words[1], words[2:]
    if script == "train.py" and "--help" not in args:
        steps = 8 if "--resume" in args else 4  # a resumed run goes on from where the first one stopped
        args = [a for a in args if not a.startswith("--train.max_steps=")] + [f"--train.max_steps={steps}"]
        if "--out" not in args and "--resume" not in args:
            out = tmp / "runs" / Path(args[args.index("--config") + 1]).stem
            while out.exists():  # the same command given twice: the first run keeps its folder
                out = out.with_name(out.name + "_again")
            args += ["--out", str(out)]
        args += ["--train.eval_per_decade=2", "--no-progress"]
    elif script == "generate_data.py":
        args = [*args, "--out", str(tmp / "data")]
    elif script == "plot.py":
        args = [str(tmp / Path(a).name) if a.endswith(".png") else a for a in args]
    elif script == "scripts/report.py":
        args = ["--check"]  # renders every template from the logs, writes nothing
    elif script == "sweep.py" and "--summarize-only" not in args:
        args = [a for a in args if a not in ("--jobs", "2")] + ["--print-commands"]
    else:
        assert script in ("train.py", "inference.py", "evaluate.py", "sweep.py", "scripts/report.py"), \
            f"README command not covered by this test: {words}"
    return [sys.executable, script, *args]


def test_readme_has_the_commands_a_user_needs():
    scripts = {w[1] for w in readme_commands() if w[0] == "python"}
    assert {"train.py", "inference.py", "evaluate.py", "plot.py", "sweep.py", "generate_data.py"} <= scripts


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path):
    # In README order, so that a command may use the run folder an earlier one made (runs/div97).
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for words in readme_commands():
        command = fast_form(words, tmp_path)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr[-2000:]}"
