"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing lost."""

import pytest

from conftest import ROOT, run_script, with_overrides

TINY = ["--no-progress", "--data.op=+", "--data.p=7", "--data.train_frac=0.6", "--model.n_layer=1",
        "--model.n_embd=32", "--model.n_head=2", "--model.d_ff=64", "--train.batch_size=16",
        "--train.threads=1", "--train.max_steps=5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("err")
    run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", root / "run",
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
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.lrr=1"], ["train.lrr", "train.lr"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.lr=fast"], ["train.lr", "float"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--model.n_layer=0"], ["model.n_layer", "positive"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--data.train_frac=0.9"], ["sum to at most 1"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--data.p=91"], ["91 is not prime"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--data.op=+", "--data.p=2", "--data.val_frac=0.1"], ["too few"]),
    (["train.py", "--config", "configs/missing.yaml"], ["configs/missing.yaml", "not found"]),
    (["generate_data.py", "--op", "/", "--p", "1"], ["at least 2"]),
    (["evaluate.py", "--checkpoint", "nowhere.pt"], ["nowhere.pt", "not found"]),
    (["plot.py", "nowhere", "--out", "x.png"], ["not a run directory"]),
    (["plot.py", "configs", "--out", "x.png"], ["has no metrics.jsonl"]),
    (["generate_data.py", "--op", "+", "--p", "100000"], ["10,000,000,000 equations", "smaller p"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.optimizer=lion"], ["train.optimizer", "muon"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.loss=sparsemax"], ["train.loss", "stablemax"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--model.block_size=8"], ["computed from the data"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--model.init_scale=0"], ["model.init_scale", "positive"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.eval_subset=-1"], ["train.eval_subset", "zero or more"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.min_lr_frac=2"], ["train.min_lr_frac", "[0, 1]"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.device=cuda"], ["cuda", "--train.device=auto"]),
    (["evaluate.py", "--checkpoint", "checkpoints/div97.pt", "--device", "cuda"], ["no CUDA GPU"]),
    (["evaluate.py", "--checkpoint", "checkpoints/sanity.pt", "--by-digits"], ["--by-digits", "modular data"]),
    (["sweep.py", "tests/reference/README.md"], ["not valid YAML"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.lr=nan"], ["train.lr", "finite"]),
    (["train.py", "--config", "configs/div97_paper.yaml", "--train.lr=1e400"], ["train.lr", "finite"]),
    (["inference.py", "--checkpoint", "checkpoints/sanity.pt", "--prompt", ""], ["--prompt is empty"]),
    (["inference.py", "--checkpoint", "checkpoints/div97.pt"], ["give one with --prompt", "12/5="]),
]


def repo_files():
    """Every file of the working tree but experiments/ (where background runs may write) with its mtime."""
    return {(str(p), p.stat().st_mtime_ns) for p in ROOT.rglob("*") if p.is_file()
            and not {".git", "__pycache__", ".pytest_cache", "experiments"} & set(p.relative_to(ROOT).parts)}


@pytest.mark.slow  # one process per case; test_faults checks the same classes in-process in the fast suite
@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a[1:3]) for a, _ in CASES])
def test_bad_input(args, needles, tmp_path):
    out = ["--out", tmp_path / "o"] if args[0] == "train.py" else []
    before = repo_files()
    assert_clean_error(run_script(*args, *out, check=False), *needles)
    assert not (tmp_path / "o").exists()
    assert repo_files() == before  # nothing written in the repo either (data/, figures, ...)


def test_gpt2_tokenizer_that_cannot_load(monkeypatch):
    import tiktoken

    from runlog import UserError
    from tokens import tiktoken_encoding

    def offline(name):
        raise ConnectionError("no internet")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(UserError, match="TIKTOKEN_CACHE_DIR"):
        tiktoken_encoding()


def test_data_dir_that_disagrees(tiny_run, tmp_path):
    result = run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", tmp_path / "o",
                        f"--data.data_dir={tiny_run / 'data'}", *with_overrides(TINY, "--data.p=11"), check=False)
    assert_clean_error(result, "p=7", "p=11")


def test_resume_with_a_model_that_does_not_match(tiny_run):
    before = (tiny_run / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--resume", tiny_run / "run", "--model.n_embd=64", check=False)
    assert_clean_error(result, "does not match")
    assert (tiny_run / "run" / "metrics.jsonl").read_text() == before


def test_resume_with_padded_numbers_is_refused(tiny_run):
    # the same equations written another way are other inputs; the run predates the key
    before = (tiny_run / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--resume", tiny_run / "run", "--data.pad_numbers=true", check=False)
    assert_clean_error(result, "data.pad_numbers=False", "data.pad_numbers=True")
    assert (tiny_run / "run" / "metrics.jsonl").read_text() == before


def test_finished_run_is_not_overwritten(tiny_run):
    before = (tiny_run / "run" / "metrics.jsonl").read_text()
    result = run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", tiny_run / "run",
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


def test_out_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("keep me")
    result = run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", tmp_path / "taken",
                        f"--data.data_dir={tmp_path / 'data'}", *TINY, check=False)
    assert_clean_error(result, "is a file")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_run_directory_that_cannot_be_made(tmp_path):
    result = run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", "/proc/no/run",
                        f"--data.data_dir={tmp_path / 'data'}", *TINY, check=False)
    assert_clean_error(result, "/proc/no/run", "writable --out")


def test_sweep_with_an_unknown_key(tmp_path):
    (tmp_path / "sweep.yaml").write_text("base: configs/div97_paper.yaml\nseed: [0]\n")
    result = run_script("sweep.py", tmp_path / "sweep.yaml", check=False)
    assert_clean_error(result, "unknown sweep key 'seed'", "seeds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_sweep_with_a_bad_config_key_starts_nothing(tmp_path):
    (tmp_path / "sweep.yaml").write_text("base: configs/div97_paper.yaml\nset: {train.lrr: 1}\n")
    assert_clean_error(run_script("sweep.py", tmp_path / "sweep.yaml", check=False), "train.lrr", "train.lr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


@pytest.mark.parametrize("content, needles", [
    (b"train:\n  lr: 1.0e-3\n  lr: 3.0e-3\n", ["key 'lr' is set twice", "line 3"]),
    ("train:\n  lr: 1.0e-3  # r\xe9glage\n".encode("latin-1"), ["not UTF-8"]),
])
def test_config_file_that_cannot_be_read_as_written(content, needles, tmp_path):
    (tmp_path / "c.yaml").write_bytes(content)
    result = run_script("train.py", "--config", tmp_path / "c.yaml", "--out", tmp_path / "o", check=False)
    assert_clean_error(result, *needles)
    assert not (tmp_path / "o").exists()


def test_sweep_with_no_seeds_says_so(tmp_path):
    (tmp_path / "sweep.yaml").write_text("base: configs/div97_paper.yaml\nseeds: []\n")
    assert_clean_error(run_script("sweep.py", tmp_path / "sweep.yaml", check=False), "'seeds'", "non-empty")


def test_division_by_zero_prompt_gets_a_note():
    result = run_script("inference.py", "--checkpoint", "checkpoints/div97.pt", "--prompt", "12/0=")
    assert "0 has no inverse mod 97" in result.stderr


def test_config_whose_base_is_itself(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    assert_clean_error(run_script("train.py", "--config", tmp_path / "a.yaml", check=False), "its own base")


def test_number_prompt_without_equals_says_what_the_model_expects():
    result = run_script("inference.py", "--checkpoint", "checkpoints/div97.pt", "--prompt", "12/5")
    assert "ends with '='" in result.stderr or "does not end with '='" in result.stderr
    tokens = result.stdout.strip().split(" ")
    assert tokens[0] == "12/5" and len(tokens) >= 2  # generated number tokens are written apart


def test_out_is_a_folder_of_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        result = run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", tmp_path / "mine",
                            f"--data.data_dir={tmp_path / 'data'}", *TINY, *extra, check=False)
        assert_clean_error(result, "holds files but no run")
        assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
