"""Shared fixtures. Tests run from the repo root, offline, on the CPU."""

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_CACHE = ROOT.parent / "shared" / "tiktoken_cache"
if SHARED_CACHE.is_dir() and "TIKTOKEN_CACHE_DIR" not in os.environ:
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED_CACHE)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def gpt2_available():
    try:
        import tiktoken

        tiktoken.get_encoding("r50k_base")
        return True
    except Exception:
        return False


needs_gpt2 = pytest.mark.skipif(not gpt2_available(), reason="GPT-2 BPE file not cached and no internet")


# Scripts whose tests run inside the test process (runpy, as `python script.py` would run them):
# starting a fresh interpreter costs seconds of torch import per call, most of the suite's time on
# 2 cores. sweep.py starts processes of its own and stays out; tests that need a real process
# boundary (signals, a blocked import) pass fresh_process=True or use subprocess themselves.
# TESTS_FRESH_PROCESS=1 runs every script in a fresh interpreter.
IN_PROCESS_SCRIPTS = {"train.py", "inference.py", "evaluate.py", "generate_data.py", "plot.py",
                      "export_checkpoint.py", "report.py"}


def run_script(*args, cwd=ROOT, check=True, fresh_process=False):
    """Run one of the repo's scripts as a user would; returns a CompletedProcess (returncode,
    stdout, stderr), from a fresh interpreter or, for IN_PROCESS_SCRIPTS, from this one."""
    script = Path(cwd) / args[0]
    if fresh_process or script.name not in IN_PROCESS_SCRIPTS or os.environ.get("TESTS_FRESH_PROCESS"):
        result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                                env=dict(os.environ, OMP_NUM_THREADS="2"))
    else:
        result = run_in_this_process(*args, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_in_this_process(*args, cwd=ROOT):
    """`python script args` without a new interpreter, whatever TESTS_FRESH_PROCESS says (for
    tests that patch this process): the script runs as __main__ with its own sys.argv, working
    folder and sys.path entry; what it changes of this process (signal handlers, torch's thread
    count, the folder) is put back afterwards."""
    script, argv = Path(cwd) / args[0], [str(a) for a in args]
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    saved_threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    try:
        sys.argv = argv
        sys.path.insert(0, str(script.parent))
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as e:  # what the interpreter would make of it
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                returncode = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # an uncaught error: the traceback a user would see, exit status 1
                traceback.print_exc()
                returncode = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        for number, handler in saved_signals.items():
            signal.signal(number, handler)
        torch.set_num_threads(saved_threads)
    return subprocess.CompletedProcess(argv, returncode, out.getvalue(), err.getvalue())


def with_overrides(args, *extra):
    """args with each --key=value of extra in place of the same key's value: a command line may
    give a config key only once."""
    keys = {e.split("=", 1)[0] for e in extra if e.startswith("--") and "=" in e}
    return [a for a in args if a.split("=", 1)[0] not in keys] + list(extra)
