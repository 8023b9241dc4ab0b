"""The progress measures (progress.py): pinned on constructed inputs, then logged by a tiny run
and drawn by plot.py from its log."""

import json
import math
import subprocess
import sys

import pytest
import torch

import progress
from checkpoint import load_checkpoint, model_from_checkpoint
from conftest import ROOT, run_script
from tasks import OPERATIONS
from train import main as train_main

FOURIER_KEYS = {"fourier_top5_share", "fourier_key_freqs", "fourier_full_loss", "fourier_restricted_loss",
                "fourier_excluded_loss"}


def group_index(op, p):
    """{residue: its index in op's group order}."""
    return {r: i for i, r in enumerate(progress.group_order(op, p))}


@pytest.mark.parametrize("p", [97, 113])
def test_discrete_log_is_a_bijection_that_turns_division_into_subtraction(p):
    order = progress.discrete_log_order(p)
    assert sorted(order) == list(range(1, p))  # every nonzero residue once: exponents 0..p-2
    log = {r: i for i, r in enumerate(order)}
    divide, multiply = OPERATIONS["/"].answer, OPERATIONS["*"].answer
    for a in range(1, p):
        for b in range(1, p):
            assert log[divide(a, b, p)] == (log[a] - log[b]) % (p - 1)
            assert log[multiply(a, b, p)] == (log[a] + log[b]) % (p - 1)


def test_primitive_roots_are_the_known_ones():
    assert [progress.primitive_root(p) for p in (7, 13, 97, 113)] == [3, 2, 5, 3]
    with pytest.raises(ValueError):
        progress.primitive_root(91)


@pytest.mark.parametrize("n", [96, 97])
def test_the_spectrum_splits_the_embedding_power_without_loss(n):
    rows = torch.randn(n, 8, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    power = progress.embedding_spectrum(rows)
    assert len(power) == n // 2 + 1
    assert float(power.sum()) == pytest.approx(float(rows.pow(2).sum()))  # Parseval, Nyquist term once
    assert float(power[0]) == pytest.approx(n * float(rows.mean(dim=0).pow(2).sum()))  # the constant


def cosine_embedding(op, p, k, width=16, seed=0):
    """A (p, width) table whose row r is one cosine at frequency k of r's index in op's group order,
    with a random phase and size per dimension (row 0 random for * and /: outside the group)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(progress.group_order(op, p))
    phase, size = torch.rand(width, generator=generator) * 2 * math.pi, 0.5 + torch.rand(width, generator=generator)
    table = torch.randn(p, width, generator=generator)
    for r, i in group_index(op, p).items():
        table[r] = size * torch.cos(2 * math.pi * k * i / n + phase)
    return table


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize("p", [97, 113])
def test_one_cosine_in_group_order_holds_all_the_power_at_its_frequency(op, p):
    k = 17
    power = progress.residue_spectrum(cosine_embedding(op, p, k), op)
    assert len(power) == len(progress.group_order(op, p)) // 2 + 1  # frequencies 0..n//2
    assert progress.top_share(power) > 0.999
    assert progress.key_frequencies(power)[0] == k
    assert len(progress.key_frequencies(power)) == progress.TOP_FREQUENCIES


def test_a_cosine_in_discrete_log_order_is_spread_out_in_natural_order():
    table = cosine_embedding("/", 97, 17)
    assert progress.top_share(progress.embedding_spectrum(table[1:])) < 0.5  # residues 1..96 as numbered


@pytest.mark.parametrize("op", ["+", "/"])
def test_a_random_embedding_spreads_its_power(op):
    table = torch.randn(97, 128, generator=torch.Generator().manual_seed(0))
    share = progress.top_share(progress.residue_spectrum(table, op))
    assert 5 / 48 < share < 0.2  # 5 of 48 frequencies, each about the same power


def cosine_logits(op, p, a, b, terms):
    """Logits (N, p) of pairs a, b: sum of size * cos(2 pi k (s - c) / n) over terms {k: size}, with
    s the answer's and c each column's index in op's group order (column 0 zero for * and /)."""
    index = group_index(op, p)
    n = len(index)
    sign = progress.CYCLIC_FORM[op][1]
    logits = torch.zeros(len(a), p, dtype=torch.float64)
    for row, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        if x in index and y in index:
            s = (index[x] + sign * index[y]) % n
            for c, i in index.items():
                logits[row, c] = sum(size * math.cos(2 * math.pi * k * (s - i) / n) for k, size in terms.items())
    return logits


def training_pairs(op, p, seed=0):
    """Half of every valid pair (b = 0 left out for /), as the training split has them."""
    pairs = [(x, y) for x in range(p) for y in range(1 if OPERATIONS[op].nonzero_y else 0, p)]
    keep = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:len(pairs) // 2]
    return torch.tensor([pairs[i][0] for i in keep]), torch.tensor([pairs[i][1] for i in keep])


@pytest.mark.parametrize("op", ["+", "-", "/"])
def test_restricted_loss_keeps_the_key_frequencies_and_excluded_loss_removes_them(op):
    p = 31
    a, b = training_pairs(op, p)
    n = len(progress.group_order(op, p))
    one = progress.fourier_losses(cosine_logits(op, p, a, b, {4: 6.0}), a, b, op, [4])
    assert one["restricted"] == pytest.approx(one["full"], abs=1e-9)
    assert one["full"] < 0.5 * math.log(n)
    assert one["excluded"] == pytest.approx(math.log(n), abs=1e-9)  # nothing left: uniform over the group
    # Two frequencies, one of them key: restricted sees the key one alone, excluded the other alone.
    two = progress.fourier_losses(cosine_logits(op, p, a, b, {4: 6.0, 9: 3.0}), a, b, op, [4])
    alone = {k: progress.fourier_losses(cosine_logits(op, p, a, b, {k: size}), a, b, op, [])["full"]
             for k, size in ((4, 6.0), (9, 3.0))}
    assert two["restricted"] == pytest.approx(alone[4], abs=1e-9)
    assert two["excluded"] == pytest.approx(alone[9], abs=1e-9)


def test_the_shipped_grokked_model_sits_on_a_few_frequencies_in_discrete_log_order():
    model, tokenizer, cfg = model_from_checkpoint(load_checkpoint(ROOT / "checkpoints" / "div97.pt"))
    power, order = progress.checkpoint_spectrum(model, tokenizer, cfg.data)
    assert order == "discrete-log order" and progress.top_share(power) > 0.8
    ids = progress.Task(cfg.data, tokenizer, {}).residue_token_ids()
    natural = progress.embedding_spectrum(model.tok_emb.weight.detach()[ids[1:]])
    assert progress.top_share(natural) < 0.3


TINY = ["--no-progress", "--data.op=/", "--data.p=13", "--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2",
        "--model.d_ff=64", "--train.batch_size=32", "--train.lr=3e-3", "--train.threads=1", "--train.max_steps=50",
        "--train.eval_per_decade=4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    train_main(["--config", "configs/div97_paper.yaml", "--out", str(root / "run"), f"--data.data_dir={root / 'data'}",
                *TINY])
    return root / "run"


def test_a_number_token_run_logs_the_measures_at_every_evaluation(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) > 3 and all(FOURIER_KEYS <= set(r) for r in rows)
    for r in rows:
        assert 0 < r["fourier_top5_share"] <= 1
        assert len(r["fourier_key_freqs"]) == 5 and all(1 <= k <= 6 for k in r["fourier_key_freqs"])  # n = 12
        assert all(math.isfinite(r[k]) for k in ("fourier_full_loss", "fourier_restricted_loss", "fourier_excluded_loss"))
    # at initialisation every answer is about equally likely over the 12 residues of the group
    assert rows[0]["fourier_full_loss"] == pytest.approx(math.log(12), abs=0.2)


def test_a_char_token_run_skips_the_measures_with_a_note(tmp_path, capsys):
    train_main(["--config", "configs/div97_paper.yaml", "--out", str(tmp_path / "run"), f"--data.data_dir={tmp_path / 'data'}",
                "--data.tokenizer=char", *TINY[:-2], "--train.max_steps=5", "--train.eval_per_decade=2"])
    err = capsys.readouterr().err
    assert err.count("progress measures (fourier_*) are skipped") == 1 and "data.tokenizer=char" in err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and not any(k.startswith("fourier_") for r in rows for k in r)


def test_plot_draws_the_measures_under_the_curves_without_torch(tiny_run, tmp_path):
    code = ("import sys, plot; fig = plot.figure_runs([sys.argv[1]], sys.argv[2]); "
            "print([ax.get_ylabel() for ax in fig.axes]); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_run), str(tmp_path / "a.png")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[1] == str(["accuracy (%)", "loss (answer tokens)", "weight norm (L2)", "embedding power share",
                          "train loss, answer token"])
    assert out[2] == "False"
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_plot_spectrum_draws_checkpoints_side_by_side(tiny_run, tmp_path):
    run_script("plot.py", "--spectrum", ROOT / "checkpoints" / "div97.pt", tiny_run, "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
    bad = run_script("plot.py", "--spectrum", ROOT / "checkpoints" / "sanity.pt", "--out", tmp_path / "t.png", check=False)
    assert bad.returncode == 2 and "not trained on modular arithmetic" in bad.stderr
