"""The paper's operations (Power et al. 2022, appendix A.1.1): every answer of every operation
recomputed by implementations of this file's own, the split files read back line by line, and
the tokens: a residue, a permutation, an operation's name and the answer are one token each."""

import json

import numpy as np
import pytest

import plot
from conftest import run_script
from config import DataConfig
from runlog import UserError
from tasks import OPERATIONS, all_equations, canonical_prompt, format_equation, parse_prompt, write_dataset
from tokens import make_tokenizer

P = 97
PERMUTATIONS_BY_NUMBER = sorted({tuple(int(d) for d in f"{n:05d}") for n in range(1234, 43211)
                                 if sorted(f"{n:05d}") == list("01234")})


def matrix(perm):
    """Permutation matrix with a 1 at (i, perm[i]): the row vector e_i times it is e_perm[i], so
    matrix(x) @ matrix(y) sends i to y[x[i]] (x acts first, the README's convention)."""
    m = np.zeros((5, 5), dtype=int)
    m[np.arange(5), list(perm)] = 1
    return m


def as_perm(m):
    return tuple(int(j) for j in m.argmax(axis=1))


def divide_by_search(x, y, p):
    """The c with c * y = x mod p, found by trying every c (no inverse formula)."""
    return next(c for c in range(p) if (c * y) % p == x)


# Each answer computed another way: modular powers by pow(), division by search, S5 by matrices.
RESIDUE_ANSWERS = {
    "+": lambda x, y, p: (x + y) % p,
    "-": lambda x, y, p: (x + (p - y)) % p,
    "*": lambda x, y, p: (x * y) % p,
    "/": lambda x, y, p: divide_by_search(x, y, p),
    "/-": lambda x, y, p: divide_by_search(x, y, p) if y % 2 == 1 else (x + (p - y)) % p,
    "x2+y2": lambda x, y, p: (pow(x, 2, p) + pow(y, 2, p)) % p,
    "x2+xy+y2": lambda x, y, p: (pow(x, 2, p) + x * y % p + pow(y, 2, p)) % p,
    "x2+xy+y2+x": lambda x, y, p: (pow(x, 2, p) + x * y % p + pow(y, 2, p) + x) % p,
    "x3+xy": lambda x, y, p: (pow(x, 3, p) + x * y % p) % p,
    "x3+xy2+y": lambda x, y, p: (pow(x, 3, p) + x * pow(y, 2, p) + y) % p,
}
GROUP_ANSWERS = {
    "s5": lambda x, y: as_perm(matrix(x) @ matrix(y)),
    "s5conj": lambda x, y: as_perm(matrix(x) @ matrix(y) @ matrix(x).T),  # a permutation matrix's inverse is its transpose
    "s5aba": lambda x, y: as_perm(matrix(x) @ matrix(y) @ matrix(x)),
}


def test_the_registry_is_the_papers_twelve_and_times():
    assert set(OPERATIONS) == set(RESIDUE_ANSWERS) | set(GROUP_ANSWERS)
    assert len(OPERATIONS) == 13


@pytest.mark.parametrize("op", list(RESIDUE_ANSWERS))
def test_every_residue_answer(op):
    equations = all_equations(op, P)
    ys = range(1, P) if op == "/" else range(P)  # only x/y leaves y = 0 out; /- takes x - 0 there
    assert [(x, y) for x, y, _ in equations] == [(x, y) for x in range(P) for y in ys]
    wrong = [(x, y, c) for x, y, c in equations if c != RESIDUE_ANSWERS[op](x, y, P)]
    assert not wrong, f"{op}: {len(wrong)} wrong answers, the first {wrong[0]}"


@pytest.mark.parametrize("op", list(GROUP_ANSWERS))
def test_every_group_answer(op):
    equations = all_equations(op, 2)  # p is not used by the S5 operations
    assert [(x, y) for x, y, _ in equations] == [(x, y) for x in PERMUTATIONS_BY_NUMBER for y in PERMUTATIONS_BY_NUMBER]
    wrong = [(x, y, c) for x, y, c in equations if c != GROUP_ANSWERS[op](x, y)]
    assert not wrong, f"{op}: {len(wrong)} wrong answers, the first {wrong[0]}"


def test_s5_composition_applies_x_first():
    swap01, cycle = (1, 0, 2, 3, 4), (1, 2, 3, 4, 0)  # cycle sends i to i + 1
    answer = next(c for x, y, c in all_equations("s5", 0) if (x, y) == (swap01, cycle))
    assert answer == (2, 1, 3, 4, 0)  # 0 -> 1 under the swap, then 1 -> 2 under the cycle; 1 -> 0 -> 1


def test_the_mixed_operation_takes_y_zero_as_even():
    answers = {(x, y): c for x, y, c in all_equations("/-", 7)}
    assert answers[(3, 0)] == 3 and answers[(3, 2)] == 1 and answers[(3, 1)] == 3 and answers[(6, 3)] == 2


@pytest.mark.parametrize("op", ["/", "/-"])
def test_division_needs_a_prime(op):
    with pytest.raises(UserError, match="prime"):
        all_equations(op, 96)


@pytest.mark.parametrize("op", ["/-", "x3+xy2+y", "s5conj"])
def test_split_files_read_back_as_the_same_equations(tmp_path, op):
    data = DataConfig(op=op, p=11, train_frac=0.3, val_frac=0.3, data_seed=2, data_dir=str(tmp_path / "d"))
    meta = write_dataset(data)
    equations = {}
    for name in ("train", "val", "test"):
        lines = (tmp_path / "d" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == meta["counts"][name]
        for line in lines:
            prompt, answer = line.split("=")
            x, y = parse_prompt(prompt + "=", op)
            assert (x, y) not in equations, f"{line} is in two splits"
            equations[(x, y)] = answer
    if op.startswith("s5"):
        perm = lambda text: tuple(int(d) for d in text)
        assert len(equations) == 120 * 120 and "p" not in meta
        assert all(answer == "".join(map(str, GROUP_ANSWERS[op](perm(x), perm(y)))) for (x, y), answer in equations.items())
    else:
        assert len(equations) == 11 * 11
        assert all(int(answer) == RESIDUE_ANSWERS[op](int(x), int(y), 11) for (x, y), answer in equations.items())


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_a_number_token_is_an_operand_an_operation_or_the_answer(op):
    x, y, c = all_equations(op, P)[-1]
    line = format_equation(x, op, y, c)
    tokenizer = make_tokenizer("number", [line])
    pieces = tokenizer.split(line)
    assert len(pieces) == 5 and pieces[1] == op and pieces[3] == "=", pieces
    assert pieces[4] == line.split("=")[1]


@pytest.mark.parametrize("typed,op,written", [
    ("01243s5 10234=", "s5", "01243 s5 10234="),
    ("3x2+y2 5 =", "x2+y2", "3 x2+y2 5="),
    ("12 / 5=", "/", "12/5="),
    ("12/-5=", "/-", "12 /- 5="),
    ("hello", "/", "hello"),
])
def test_prompts_are_rewritten_as_the_data_files_write_them(typed, op, written):
    assert canonical_prompt(typed, op) == written


def test_generate_data_takes_the_new_names(tmp_path):
    out = run_script("generate_data.py", "--op", "x2+xy+y2+x", "--p", "7", "--out", tmp_path / "d").stdout
    assert "49" in out and json.loads((tmp_path / "d" / "meta.json").read_text())["op"] == "x2+xy+y2+x"
    assert (tmp_path / "d" / "train.txt").read_text().splitlines()[0].count(" x2+xy+y2+x ") == 1
    bad = run_script("generate_data.py", "--op", "x2+y3", "--out", tmp_path / "e", check=False)
    assert bad.returncode == 2 and "x2+xy+y2" in bad.stderr


@pytest.mark.slow  # several processes or a bf16 reference run: .ci/run runs it after the fast tests
def test_an_s5_model_trains_and_answers_a_prompt_typed_without_spaces(tmp_path):
    run_script("train.py", "--config", "configs/div97_paper.yaml", "--out", tmp_path / "run", "--no-progress",
               "--data.op=s5", "--data.train_frac=0.3", f"--data.data_dir={tmp_path / 'data'}", "--model.n_layer=1",
               "--model.n_embd=16", "--model.n_head=2", "--model.d_ff=32", "--train.max_steps=2", "--train.threads=1")
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "op: s5" in config
    done = run_script("inference.py", "--checkpoint", tmp_path / "run", "--prompt", "01243s5 10234=")
    assert done.stdout.startswith("01243 s5 10234="), done.stdout


def test_plot_versus_draws_best_accuracy_and_steps_against_a_config_key(tmp_path):
    runs = []
    for op, frac, accs in [("+", 0.3, [0.2, 0.995, 0.999]), ("+", 0.7, [0.5, 1.0, 1.0]), ("s5", 0.3, [0.1, 0.4, 0.3])]:
        run = tmp_path / f"{op}_{frac}"
        run.mkdir()
        (run / "config.yaml").write_text(f"data: {{op: '{op}', train_frac: {frac}}}\n")
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": 100 * (i + 1), "val_acc": a, "train_acc": 1.0}) + "\n"
                                                   for i, a in enumerate(accs)))
        runs.append(run)
    points = plot.versus_points(runs, "data.train_frac", ["data.op"])
    # best val accuracy, first step at 99% (None: never), last step; one tuple per run
    assert points == {"+": {0.3: [(0.999, 200, 300)], 0.7: [(1.0, 200, 300)]}, "s5": {0.3: [(0.4, None, 300)]}}
    out = tmp_path / "ops.png"
    run_script("plot.py", *runs, "--versus", "data.train_frac", "--group-by", "data.op", "--out", out)
    assert out.stat().st_size > 10_000
    refused = run_script("plot.py", *runs, "--versus", "data.train_frac", "--out", tmp_path / "x.png", check=False)
    assert refused.returncode == 2 and "--group-by" in refused.stderr and not (tmp_path / "x.png").exists()
