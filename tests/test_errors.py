"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing lost."""

import pytest

from conftest import run_script

TINY = ["--no-progress", "--data.op=+", "--data.p=7", "--data.train_frac=0.6", "--model.n_layer=1",
        "--model.n_embd=32", "--model.n_head=2", "--model.d_ff=64", "--train.batch_size=16",
        "--train.threads=1", "--train.max_steps=5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("err")
    run_script("train.py", "--config", "configs/div97.yaml", "--out", root / "run",
               f"--data.data_dir={root / 'data'}", *TINY)
    return root


def assert_clean_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # banners may come before it
    for needle in needles:
        assert needle in errors[0]


CASES = [
    (["train.py", "--config", "configs/div97.yaml", "--train.lrr=1"], ["train.lrr", "train.lr"]),
    (["train.py", "--config", "configs/div97.yaml", "--train.lr=fast"], ["train.lr", "float"]),
    (["train.py", "--config", "configs/div97.yaml", "--model.n_layer=0"], ["model.n_layer", "positive"]),
    (["train.py", "--config", "configs/div97.yaml", "--data.train_frac=0.9"], ["sum to at most 1"]),
    (["train.py", "--config", "configs/div97.yaml", "--data.p=91"], ["91 is not prime"]),
    (["train.py", "--config", "configs/div97.yaml", "--data.op=+", "--data.p=2", "--data.val_frac=0.1"], ["too few"]),
    (["train.py", "--config", "configs/missing.yaml"], ["configs/missing.yaml", "not found"]),
    (["generate_data.py", "--op", "/", "--p", "1"], ["at least 2"]),
    (["evaluate.py", "--checkpoint", "nowhere.pt"], ["nowhere.pt", "not found"]),
    (["plot.py", "nowhere", "--out", "x.png"], ["not a run directory"]),
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a[1:3]) for a, _ in CASES])
def test_bad_input(args, needles, tmp_path):
    out = ["--out", tmp_path / "o"] if args[0] == "train.py" else []
    assert_clean_error(run_script(*args, *out, check=False), *needles)
    assert not (tmp_path / "o").exists()


def test_data_dir_that_disagrees(tiny_run, tmp_path):
    result = run_script("train.py", "--config", "configs/div97.yaml", "--out", tmp_path / "o",
                        f"--data.data_dir={tiny_run / 'data'}", *TINY[:-1], "--data.p=11", check=False)
    assert_clean_error(result, "p=7", "p=11")


def test_resume_with_a_model_that_does_not_match(tiny_run):
    before = (tiny_run / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--resume", tiny_run / "run", "--model.n_embd=64", check=False)
    assert_clean_error(result, "does not match")
    assert (tiny_run / "run" / "metrics.jsonl").read_text() == before


def test_finished_run_is_not_overwritten(tiny_run):
    before = (tiny_run / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--config", "configs/div97.yaml", "--out", tiny_run / "run",
                        f"--data.data_dir={tiny_run / 'data'}", *TINY, check=False)
    assert_clean_error(result, "already holds a run", "--overwrite")
    assert (tiny_run / "run" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("args,needles", [
    (["--prompt", "3+x="], ["'x'"]),
    (["--prompt", "1+1=1+1=1+1="], ["prompt", "at most"]),
    (["--prompt", "3+4=", "--max-new-tokens", "50"], ["block size"]),
    (["--prompt", "3+4=", "--temperature", "-1"], ["temperature"]),
])
def test_bad_inference_requests(tiny_run, args, needles):
    assert_clean_error(run_script("inference.py", "--checkpoint", tiny_run / "run", *args, check=False), *needles)


def test_truncated_checkpoint(tiny_run, tmp_path):
    data = (tiny_run / "run" / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert_clean_error(run_script("inference.py", "--checkpoint", tmp_path / "cut.pt", check=False), "not a readable checkpoint")
