import json
from pathlib import Path

import pytest
import torch

from config import DataConfig
from runlog import UserError
from tokens import batch_model_inputs, encode_examples, make_tokenizer, tokenizer_from_state
from conftest import needs_gpt2, run_script
from tasks import (all_equations, all_pair_examples, check_dataset, data_identity, dataset_dir, ensure_dataset,
                   first_difference, load_splits, read_split, split_equations, write_dataset)
from model import GPT, GPTConfig


@pytest.mark.parametrize("op,p,count", [("+", 97, 9409), ("-", 97, 9409), ("/", 97, 9312),
                                        ("+", 113, 12769), ("-", 113, 12769), ("/", 113, 12656)])
def test_counts(op, p, count):
    assert len(all_equations(op, p)) == count


@pytest.mark.parametrize("op", ["+", "-", "/", "*"])
def test_every_label_is_right(op):
    p = 97
    for a, b, c in all_equations(op, p):
        assert 0 <= a < p and 0 <= b < p and 0 <= c < p
        if op == "+":
            assert c == (a + b) % p
        elif op == "-":
            assert c == (a - b) % p
        elif op == "*":
            assert c == (a * b) % p
        else:
            assert b != 0 and c == a * pow(b, -1, p) % p and (c * b) % p == a


def test_pairs_are_unique():
    eqs = all_equations("/", 97)
    assert len({(a, b) for a, b, _ in eqs}) == len(eqs)


def test_splits_disjoint_complete_and_stable():
    eqs = all_equations("/", 97)
    s = split_equations(eqs, 0.5, 0.25, seed=3)
    sets = {k: set(v) for k, v in s.items()}
    assert sum(len(v) for v in s.values()) == len(eqs)
    assert sets["train"].isdisjoint(sets["val"]) and sets["train"].isdisjoint(sets["test"])
    assert sets["val"].isdisjoint(sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(eqs)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (4656, 2328, 2328)
    assert split_equations(eqs, 0.5, 0.25, seed=3) == s
    assert split_equations(eqs, 0.5, 0.25, seed=4)["train"] != s["train"]


def test_non_prime_division_refused():
    with pytest.raises(UserError, match="prime"):
        all_equations("/", 96)
    result = run_script("generate_data.py", "--op", "/", "--p", "96", check=False)
    assert result.returncode == 2 and "96 is not prime" in result.stderr and "Traceback" not in result.stderr


def test_too_small_to_split_refused():
    with pytest.raises(UserError, match="too few"):
        split_equations(all_equations("+", 2), 0.5, 0.1, seed=0)


def test_written_files_and_meta(tmp_path):
    data = DataConfig(op="-", p=13, train_frac=0.6, val_frac=0.2, data_dir=str(tmp_path / "d"))
    meta = write_dataset(data)
    assert meta["counts"] == {"train": 101, "val": 34, "test": 34}
    train = (tmp_path / "d" / "train.txt").read_text().splitlines()
    assert len(train) == 101 and all("-" in line and "=" in line for line in train)
    for line in train:
        left, c = line.split("=")
        a, b = map(int, left.split("-"))
        assert int(c) == (a - b) % 13
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["op"] == "-"
    assert read_split(tmp_path / "d" / "train.txt")[0][0].endswith("=")


def test_data_dir_that_disagrees_with_config_is_refused(tmp_path):
    data = DataConfig(op="+", p=7, data_dir=str(tmp_path / "d"))
    ensure_dataset(data, log=lambda m: None)
    data.p = 11
    with pytest.raises(UserError, match="p=7"):
        check_dataset(data)
    data.p = 7
    (tmp_path / "d" / "val.txt").write_text("1+1=3\n")
    with pytest.raises(UserError, match="changed"):
        check_dataset(data)


def test_a_resume_is_refused_on_other_data_and_old_identities_still_match():
    from checkpoint import check_same_data

    data = DataConfig(op="+", p=7)
    written_before_pad_numbers = {k: v for k, v in data_identity(data).items() if k != "pad_numbers"}
    check_same_data({"data": written_before_pad_numbers}, data, "runs/x")  # no key: unpadded
    check_same_data({"data": {"kind": "modular", "op": "+"}}, data, "runs/x")  # missing keys are not compared
    assert first_difference(written_before_pad_numbers, data_identity(DataConfig(op="+", p=7, pad_numbers=True))) \
        == "pad_numbers"
    with pytest.raises(UserError, match=r"data.p=7; resuming it with data.p=11"):
        check_same_data({"data": data_identity(data)}, DataConfig(op="+", p=11), "runs/x")
    with pytest.raises(UserError, match="data.tokenizer"):
        check_same_data({"data": data_identity(data)}, DataConfig(op="+", p=7, tokenizer="char"), "runs/x")
    text = DataConfig(kind="text", tokenizer="char", text=["hello"])
    assert first_difference(data_identity(text), data_identity(DataConfig(kind="text", tokenizer="char",
                                                                          text=["hellO"]))) == "text"


def test_generate_on_first_use(tmp_path):
    data = DataConfig(op="+", p=7, data_dir=str(tmp_path / "new"))
    messages = []
    splits = load_splits(data, log=messages.append)
    assert sum(len(v) for v in splits.values()) == 49 and "generated" in messages[0]


def test_default_dir_name():
    assert str(dataset_dir(DataConfig(op="/", p=97))) == "data/div97_train0.5_val0.25_seed0"
    assert str(dataset_dir(DataConfig(op="+", p=113, pad_numbers=True))) == "data/add113_train0.5_val0.25_seed0_padded"


def test_padded_numbers_same_split_one_length(tmp_path):
    plain = DataConfig(op="+", p=113, data_dir=str(tmp_path / "plain"))
    padded = DataConfig(op="+", p=113, pad_numbers=True, data_dir=str(tmp_path / "padded"))
    plain_splits, padded_splits = load_splits(plain, log=print), load_splits(padded, log=print)
    for name in ("train", "val", "test"):
        # the same equations in the same order, only written with leading zeros
        assert [(int(p[:-1].split("+")[0]), int(p[:-1].split("+")[1]), int(c)) for p, c in plain_splits[name]] == \
               [(int(p[:-1].split("+")[0]), int(p[:-1].split("+")[1]), int(c)) for p, c in padded_splits[name]]
        assert {len(p) + len(c) for p, c in padded_splits[name]} == {11}  # 007+104=111
    assert ("007+104=", "111") in padded_splits["train"] + padded_splits["val"] + padded_splits["test"]
    assert all_pair_examples(padded)[1] == ("000+001=", "001") and all_pair_examples(plain)[1] == ("0+1=", "1")
    padded.pad_numbers = False  # the padded folder now disagrees with the config
    padded.data_dir = str(tmp_path / "padded")
    with pytest.raises(UserError, match="pad_numbers"):
        check_dataset(padded)


def test_char_and_number_tokenizers_round_trip():
    texts = ["12/5=80", "3/96=1"]
    char = make_tokenizer("char", texts)
    number = make_tokenizer("number", texts)
    assert len(char.encode("12/5=80")) == 7
    assert len(number.encode("12/5=80")) == 5
    for tok in (char, number):
        for t in texts:
            assert tok.decode(tok.encode(t)) == t
        again = tokenizer_from_state(tok.state())
        assert again.encode("12/5=80") == tok.encode("12/5=80")
    with pytest.raises(UserError, match="'%'"):
        char.encode("1%2")


@needs_gpt2
def test_gpt2_tokenizer_offline():
    tok = make_tokenizer("gpt2")
    assert tok.encode("I love machine learning.") == [40, 1842, 4572, 4673, 13]
    assert tok.decode([40, 1842, 4572, 4673, 13, tok.eos_id, tok.pad_id]) == "I love machine learning."


def test_loss_mask_covers_exactly_the_answer():
    tok = make_tokenizer("char", ["12/5=80", "1/2=49"])
    batch = encode_examples(tok, [("12/5=", "80"), ("1/2=", "49")])
    for row in range(2):
        targets = batch["targets"][row][batch["loss_mask"][row]].tolist()
        want = "80" if row == 0 else "49"
        assert tok.decode(targets) == want and targets[-1] == tok.eos_id
    assert batch["attention_mask"][1].sum() == 7 and batch["attention_mask"][0].sum() == 8
    assert not batch["loss_mask"][~batch["attention_mask"]].any()


def test_right_padded_batches_take_the_fast_path_with_the_same_loss():
    """Char-level equations differ in length; right padding lets the model drop the mask and run
    its last block only at answer columns, and every real answer logit and the loss are unchanged."""
    examples = [("12/5=", "80"), ("1/2=", "49"), ("96/95=", "48"), ("3/3=", "1")]
    tok = make_tokenizer("char", [p + c for p, c in examples])
    batch = encode_examples(tok, examples)
    attention_mask, positions = batch_model_inputs(batch)
    assert attention_mask is None
    assert set(positions.tolist()) == set(batch["loss_mask"].any(0).nonzero().flatten().tolist())
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, d_ff=32, vocab_size=tok.vocab_size,
                          block_size=batch["idx"].size(1))).eval()
    args = batch["idx"], batch["targets"], batch["loss_mask"]
    full, loss = model(*args, attention_mask=batch["attention_mask"])
    fast, fast_loss = model(*args, attention_mask=None, positions=positions)
    assert torch.allclose(loss, fast_loss, atol=1e-6)
    answer = batch["loss_mask"][:, positions]
    assert torch.allclose(full[:, positions][answer], fast[answer], atol=1e-5)
    left = dict(batch, attention_mask=batch["attention_mask"].flip(1))  # left padding keeps the mask
    kept_mask, no_positions = batch_model_inputs(left)
    assert kept_mask is left["attention_mask"] and no_positions is None


def test_mask_first_tokens():
    tok = make_tokenizer("char", ["abcdef"])
    batch = encode_examples(tok, [("", "abcdef")], mask_first=3)
    assert batch["loss_mask"][0].tolist() == [False, False, False, True, True, True, True]


@pytest.mark.parametrize("op, p", [(op, p) for op in "+-/" for p in (97, 113)])
def test_committed_splits_are_what_generate_data_makes(op, p, tmp_path):
    # The brief's six data sets are committed in data/ (a deliverable); the generator must remake
    # them byte for byte at the default split and seed.
    name = {"+": "add", "-": "sub", "/": "div"}[op]
    committed = Path("data") / f"{name}{p}_train0.5_val0.25_seed0"
    run_script("generate_data.py", "--op", op, "--p", p, "--out", tmp_path / "made")
    for file in ("train.txt", "val.txt", "test.txt", "meta.json"):
        assert (tmp_path / "made" / file).read_bytes() == (committed / file).read_bytes(), file
    counts = json.loads((committed / "meta.json").read_text())["counts"]
    assert sum(counts.values()) == p * p - (p if op == "/" else 0)
