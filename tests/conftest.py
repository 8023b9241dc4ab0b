"""Shared fixtures. Tests run from the repo root, offline, on the CPU."""

import os
import subprocess
import sys
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


def run_script(*args, cwd=ROOT, check=True):
    """Run one of the repo's scripts as a user would; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def with_overrides(args, *extra):
    """args with each --key=value of extra in place of the same key's value: a command line may
    give a config key only once."""
    keys = {e.split("=", 1)[0] for e in extra if e.startswith("--") and "=" in e}
    return [a for a in args if a.split("=", 1)[0] not in keys] + list(extra)
