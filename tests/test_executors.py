"""sweep.py --executor: the same runs through submitit's local executor (Slurm's stand-in here),
with the sweep's rules (finished runs skipped, the tables built) and clear refusals."""

import shutil

import pytest

from conftest import run_script

TINY = {"data.op": "+", "data.p": 7, "data.train_frac": 0.6, "data.val_frac": 0.2, "model.n_layer": 1,
        "model.n_embd": 16, "model.n_head": 2, "model.d_ff": 32, "train.batch_size": 8, "train.max_steps": 3,
        "train.eval_schedule": "fixed", "train.eval_interval": 1, "train.stop_patience": 0, "train.eval_subset": 0}


def tiny_study(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    lines = ["base: configs/div97_paper.yaml", "seeds: [0, 1]", "set:"]
    lines += [f"  {key}: {value!r}" if isinstance(value, str) else f"  {key}: {value}" for key, value in TINY.items()]
    lines.append(f"  data.data_dir: '{tmp_path / 'data'}'")
    (study / "sweep.yaml").write_text("\n".join(lines) + "\n")
    return study


@pytest.mark.slow
def test_local_executor_runs_the_missing_runs_then_skips_them(tmp_path):
    pytest.importorskip("submitit")
    study = tiny_study(tmp_path)
    first = run_script("sweep.py", study / "sweep.yaml", "--executor", "local", "--time-min", "5")
    runs = sorted(p.name for p in study.iterdir() if (p / "summary.json").is_file())
    assert runs == ["div97_paper_s0", "div97_paper_s1"], first.stderr
    assert "through submitit" in first.stderr and (study / "summary.md").is_file()
    again = run_script("sweep.py", study / "sweep.yaml", "--executor", "local")
    assert "2 already done, 0 to run" in again.stderr


def test_slurm_without_slurm_and_slurm_options_without_slurm_are_refused(tmp_path):
    study = tiny_study(tmp_path)
    if shutil.which("sbatch") is None:
        result = run_script("sweep.py", study / "sweep.yaml", "--executor", "slurm", check=False)
        assert result.returncode == 2 and "sbatch" in result.stderr
    result = run_script("sweep.py", study / "sweep.yaml", "--partition", "gpu", check=False)
    assert result.returncode == 2 and "--executor slurm" in result.stderr
    assert not any(study.glob("div97_paper_s*"))
