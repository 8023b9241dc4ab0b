import pytest

from config import config_from_dict, config_to_dict, load_config
from runlog import KEYS_ADDED_LATER, UserError, upgrade_config
from conftest import run_script


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_file_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1e-3\nmodel:\n  n_layer: 3\n"),
                      ["--train.lr=3e-4", "--seed=5", "--train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.n_layer == 3 and cfg.seed == 5 and cfg.train.betas == [0.8, 0.9]
    assert cfg.name == "c"


def test_yaml_exponent_string_is_read_as_float(tmp_path):
    assert load_config(write(tmp_path, "train:\n  lr: 1e-3\n")).train.lr == 1e-3


def test_unknown_key_names_it_and_suggests(tmp_path):
    with pytest.raises(UserError, match=r"unknown config key 'train\.lrr'.*Did you mean 'train\.lr'"):
        load_config(write(tmp_path, "train:\n  lrr: 1\n"))
    with pytest.raises(UserError, match="unknown config key 'modle'"):
        load_config(write(tmp_path, "modle:\n  n_layer: 1\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(UserError, match="'model.n_layer' must be int"):
        load_config(None, ["--model.n_layer=two"])
    with pytest.raises(UserError, match="must be int"):
        load_config(None, ["--model.n_layer=1.5"])
    with pytest.raises(UserError, match="must be bool"):
        load_config(None, ["--train.compile=maybe"])


@pytest.mark.parametrize("override,message", [
    ("--model.n_head=3", "divisible"),
    ("--model.n_layer=0", "positive"),
    ("--train.batch_size=-1", "positive"),
    ("--data.train_frac=0.8", "at most 1"),
    ("--train.optimizer=lion", "choose one of"),
    ("--model.vocab_size=10", "computed from the data"),
    ("--train.weight_decay=-1", "zero or more"),
])
def test_impossible_values(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_config_round_trips_through_a_dict():
    cfg = load_config(None, ["--train.lr=0.01"])
    cfg.model.vocab_size, cfg.model.block_size = 12, 6
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg


def test_keys_added_later_stand_for_the_defaults():
    # Readers fill these into config.yaml files written before the keys existed: they must be the
    # values that keep the old behaviour, which every lever's default does.
    defaults = config_to_dict(load_config())
    for dotted, value in KEYS_ADDED_LATER.items():
        section, key = dotted.split(".")
        assert defaults[section][key] == value, dotted


def test_model_attention_is_checked_against_its_choices():
    assert load_config(None, ["--model.attention=explicit"]).model.attention == "explicit"
    with pytest.raises(UserError, match="model.attention.*choose one of: sdpa, explicit"):
        load_config(None, ["--model.attention=flash"])
    with pytest.raises(UserError, match="'train.attention_kernel' is now 'model.attention'"):
        load_config(None, ["--train.attention_kernel=explicit"])


@pytest.mark.parametrize("kernel, attention", [("explicit", "explicit"), ("auto", "sdpa"), ("default", "sdpa")])
def test_configs_written_before_model_attention_still_load(kernel, attention, tmp_path):
    # Checkpoints, run logs' config.yaml and config files of that time set train.attention_kernel.
    old = config_to_dict(load_config())
    del old["model"]["attention"]
    old["train"]["attention_kernel"] = kernel
    old["model"]["vocab_size"], old["model"]["block_size"] = 12, 6
    assert config_from_dict(old).model.attention == attention
    assert load_config(write(tmp_path, f"train:\n  attention_kernel: {kernel}\n")).model.attention == attention
    (tmp_path / "child.yaml").write_text(f"base: {tmp_path / 'c.yaml'}\nmodel:\n  n_layer: 1\n")
    assert load_config(tmp_path / "child.yaml").model.attention == attention
    with pytest.raises(UserError, match="keep model.attention only"):
        load_config(write(tmp_path, f"model:\n  attention: {'sdpa' if attention == 'explicit' else 'explicit'}\n"
                                    f"train:\n  attention_kernel: {kernel}\n"))


@pytest.mark.parametrize("packed", [True, False])
def test_configs_that_set_the_removed_train_packed_still_load(packed, tmp_path, capsys):
    # Sweep files, run logs' config.yaml and checkpoints of that time set train.packed (speed only).
    # A checkpoint of then sets train.attention_kernel too.
    written = str(packed).lower()
    old = config_to_dict(load_config())
    del old["model"]["attention"]
    old["train"].update(packed=packed, attention_kernel="explicit")
    old["model"]["vocab_size"], old["model"]["block_size"] = 12, 6
    assert "packed" not in upgrade_config(old)["train"] and old["train"]["packed"] is packed  # a copy upgraded
    assert config_from_dict(old).model.attention == "explicit"
    assert load_config(write(tmp_path, f"train:\n  packed: {written}\n  lr: 0.01\n")).train.lr == 0.01
    assert load_config(None, [f"--train.packed={written}"]) == load_config(None)
    assert capsys.readouterr().err == ""
    with pytest.raises(UserError, match="'train.packed' was removed.*true or false"):
        load_config(None, ["--train.packed=maybe"])
    with pytest.raises(UserError, match="'train.packed' was removed.*true or false"):
        load_config(write(tmp_path, "train:\n  packed: 1\n"))


def test_cli_error_is_one_line_without_traceback(tmp_path):
    result = run_script("train.py", "--config", write(tmp_path, "train:\n  lrr: 1\n"), check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "train.lr" in result.stderr


def test_help_lists_every_key():
    out = run_script("train.py", "--help").stdout
    for key in ("--train.lr=0.001", "--model.d_ff=512", "--data.op='/'", "--seed=0", "--train.grokfast_lambda"):
        assert key in out


def _log(pairs):
    return [{"step": s, "train_acc": t, "test_acc": v} for s, t, v in pairs]


def test_grokking_summary_on_synthetic_logs():
    from runlog import grokking_summary

    never = grokking_summary(_log([(0, 0.0, 0.0), (100, 1.0, 0.1), (1000, 1.0, 0.2)]))
    assert never["train_100"] == 100 and never["test_99"] is None and never["lag_100"] is None
    assert not never["grokked"]

    early = grokking_summary(_log([(0, 0.0, 0.0), (100, 0.9, 0.995), (200, 1.0, 1.0)]))
    assert early["test_99"] == 100 and early["train_99"] == 200 and early["lag_99"] == -100
    assert early["lag_100"] == 0 and early["grokked"]

    collapse = grokking_summary(_log([(0, 0, 0), (10, 1.0, 0.0), (500, 1.0, 1.0), (600, 0.5, 0.4), (900, 1.0, 1.0)]))
    assert collapse["test_100"] == 500 and collapse["lag_100"] == 490 and collapse["final_test_acc"] == 1.0


def test_text_keys_take_the_value_as_written():
    assert load_config(None, ["--data.op=-"]).data.op == "-"
    assert load_config(None, ["--data.op='-'"]).data.op == "-"
    assert load_config(None, ["--data.op=+", "--data.tokenizer=char"]).data.tokenizer == "char"


def test_base_inheritance_and_trimmed_configs(tmp_path):
    (tmp_path / "child.yaml").write_text("base: configs/div97_paper.yaml\ntrain:\n  lr: 3.0e-3\n")
    child, parent = load_config(tmp_path / "child.yaml"), load_config("configs/div97_paper.yaml")
    assert child.train.lr == 3e-3 and child.name == "child"
    assert child.train.stop_patience == parent.train.stop_patience == 10
    assert load_config("configs/warmup/sub113_l1.yaml").data.op == "-"
    assert load_config("configs/warmup/sub113_l1.yaml").data.tokenizer == "char"
    assert load_config("configs/sanity_mask3.yaml").data.tokenizer == "gpt2"
