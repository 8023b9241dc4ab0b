"""The run config: every default of every setting, loading YAML with `base:` inheritance, overrides.

Every default lives in the dataclasses below (GPTConfig in model.py); configs/*.yaml only set
values, and a config may start from another with `base: configs/other.yaml`. The loader rejects
unknown keys and wrong types with a message that names the key and the valid choices; the
choices of the training levers are the names in levers.py's registries.
"""

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_type_hints

import yaml

from levers import OPTIMIZERS, SCHEDULES, TOKEN_LOSSES
from model import ATTENTION_KINDS, GPTConfig
from runlog import MAX_INT, REMOVED_KEYS, UserError, is_removed, load_yaml_mapping, shorten, upgrade_config
from tasks import check_operation


@dataclass
class DataConfig:
    kind: str = "modular"  # "modular": a op b = c (mod p); "text": the strings below
    tokenizer: str = "number"  # "number": one token per residue; "char"; "gpt2" (tiktoken r50k_base)
    # modular arithmetic (generate_data.py)
    op: str = "/"  # + - * / /- x2+y2 x2+xy+y2 x2+xy+y2+x x3+xy x3+xy2+y s5 s5conj s5aba (tasks.OPERATIONS)
    p: int = 97  # the modulus; not used by the S5 operations
    train_frac: float = 0.5  # Power et al. 2022, Figure 1: 50% of all equations for training
    val_frac: float = 0.25  # the rest after train and val is the test split
    data_seed: int = 0  # shuffles the split; independent of the model seed
    data_dir: str = ""  # default: data/<op><p>_train<f>_val<f>_seed<s>
    # write every number with the digits of p - 1 (7+4=11 -> 007+004=011): one input shape for
    # character tokens, where 7+104= and 56+51= are otherwise different lengths
    pad_numbers: bool = False
    # text memorisation (sanity checks)
    text: list = field(default_factory=list)  # training strings, one example each
    mask_first: int = 0  # leave the first N target tokens of each example out of the loss


@dataclass
class TrainConfig:
    # "adamw" (decoupled weight decay), "adam" (L2 added to the gradient), "sgd" (momentum betas[0]),
    # "muon" (Muon on the blocks' matrices, AdamW on the rest; see levers.py)
    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 1.0
    decay: str = "matrices"  # which parameters decay: "matrices" (2-D weights; nanoGPT) or "all" (the paper)
    warmup_steps: int = 10
    # after warmup: "constant"; "cosine" (down to min_lr_frac * lr at max_steps); "drop" (lr times
    # min_lr_frac from the first full evaluation with train accuracy >= drop_train_acc)
    schedule: str = "constant"
    min_lr_frac: float = 0.1
    drop_train_acc: float = 1.0
    loss: str = "softmax"  # "softmax" cross-entropy, or "stablemax" (Prieto et al. 2025)
    perpendicular_grad: bool = False  # drop each gradient's component along its weights (Prieto et al.)
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    grokfast_alpha: float = 0.0  # Grokfast-EMA (Lee et al. 2024) decay of the gradient average
    grokfast_lambda: float = 0.0  # its amplification; 0 = off
    batch_size: int = 512
    max_steps: int = 100_000
    eval_schedule: str = "log"  # "log": about eval_per_decade points per decade; "fixed": every eval_interval
    eval_interval: int = 100
    eval_per_decade: int = 20
    eval_batch_size: int = 8192
    eval_splits: list = field(default_factory=lambda: ["train", "val", "test"])  # scored at each evaluation
    # Cheap evaluation: an evaluation less than eval_full_gap steps after the last full one scores
    # only the first eval_subset examples of each split (its record says "subset"); 0 = always full.
    eval_subset: int = 0
    eval_full_gap: int = 0
    stop_patience: int = 0  # stop once val accuracy >= stop_val_acc for this many full evals; 0 = never
    stop_val_acc: float = 1.0
    checkpoint_interval: int = 1000  # steps between overwrites of last.pt
    log_checkpoints: bool = True  # also keep step_1000.pt, step_10000.pt, ... (powers of ten)
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda", "mps"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; weights and optimizer stay fp32)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch CPU threads; 0 = torch's default


@dataclass
class Config:
    name: str = ""  # run name; default: the config file's stem
    seed: int = 0  # model init, dropout and batch order
    out_dir: str = ""  # default: runs/<name>
    model: GPTConfig = field(default_factory=GPTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {
    "model.attention": list(ATTENTION_KINDS),
    "data.kind": ["modular", "text"],
    "data.tokenizer": ["number", "char", "gpt2"],
    "train.optimizer": list(OPTIMIZERS),
    "train.decay": ["matrices", "all"],
    "train.schedule": list(SCHEDULES),
    "train.loss": list(TOKEN_LOSSES),
    "train.eval_schedule": ["log", "fixed"],
    "train.device": ["auto", "cpu", "cuda", "mps"],
    "train.precision": ["fp32", "bf16"],
}
DERIVED = {"model.vocab_size", "model.block_size"}  # set from the data, never by the user
SECTIONS = {"model": GPTConfig, "data": DataConfig, "train": TrainConfig}


def _coerce(key, value, kind):
    """Check one value against its declared type; ints pass as floats, '1e-3' strings as floats."""
    if kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, tuple):
        return list(value)
    if kind is list and isinstance(value, str):
        value = [value]  # a single text string
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise UserError(
            f"config key '{key}' must be {kind.__name__}, got {type(value).__name__} {shorten(repr(value))}"
        )
    if kind is float and not math.isfinite(value):  # 'nan', or 1e400 read as infinity
        raise UserError(f"config key '{key}' must be a finite number, got {shorten(repr(value))}")
    if key == "train.betas":
        try:
            value = [float(b) for b in value]
        except (TypeError, ValueError):
            value = []
        if len(value) != 2:
            raise UserError("config key 'train.betas' must be two numbers, like [0.9, 0.98]")
    return value


MOVED = {"train.attention_kernel": "model.attention"}  # old key -> its new home (runlog.upgrade_config)


def _unknown_key(key, valid):
    if key in MOVED:
        return UserError(f"config key '{key}' is now '{MOVED[key]}'; set that instead")
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return UserError(f"unknown config key '{key}'.{hint} Valid keys: {', '.join(valid)}")


def _declared_type(cfg, dotted):
    """(object holding the key, key, declared type) of a dotted key, or a UserError naming it."""
    parts = dotted.split(".")
    top = [f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS]
    if len(parts) == 1:
        if parts[0] in SECTIONS:
            raise UserError(f"'{dotted}' is a section; set one of its keys, like --{dotted}.KEY=VALUE")
        if parts[0] not in top:
            raise _unknown_key(dotted, top + [f"{s}.KEY" for s in SECTIONS])
        return cfg, parts[0], get_type_hints(Config)[parts[0]]
    section, key = parts[0], ".".join(parts[1:])
    if section not in SECTIONS:
        raise _unknown_key(dotted, top + list(SECTIONS))
    valid = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in valid:
        raise _unknown_key(dotted, [f"{section}.{k}" for k in valid])
    if dotted in DERIVED:
        raise UserError(f"'{dotted}' is computed from the data; remove it from the config")
    return getattr(cfg, section), key, get_type_hints(SECTIONS[section])[key]


def set_value(cfg, dotted, value):
    """Set cfg.<section>.<key> (or a top-level key) from a dotted name, with type checks."""
    holder, key, kind = _declared_type(cfg, dotted)
    setattr(holder, key, _coerce(dotted, value, kind))


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key in SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise UserError(f"config section '{key}' must be a mapping of keys to values")
            yield from _flatten(value, f"{key}.")
        else:
            yield dotted, value


def apply_override(cfg, text):
    """'--train.lr=3e-4': the value is read as YAML, except for text keys, which take it as
    written (so --data.op=- is the operation '-', not a YAML list); quotes around it are dropped.
    A removed key (runlog.REMOVED_KEYS, still in old sweep files and commands) is checked, then dropped."""
    if not text.startswith("--") or "=" not in text:
        raise UserError(f"cannot read override '{text}': write it as --section.key=value")
    dotted, raw = text[2:].split("=", 1)
    kind = bool if dotted in REMOVED_KEYS else _declared_type(cfg, dotted)[2]
    if kind is str:
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
    else:
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        except ValueError:  # a whole number longer than int() reads (4,300 digits)
            raise UserError(f"config key '{dotted}' is {shorten(raw)}, a number too long to read; give one in range")
    if not is_removed(dotted, value):
        set_value(cfg, dotted, value)


def apply_overrides(cfg, overrides):
    """apply_override for each of a command line's overrides; a key given twice is refused (which
    one was meant?), not settled silently by the last."""
    seen = {}
    for text in overrides:
        dotted = text[2:].split("=", 1)[0] if text.startswith("--") else None
        if dotted in seen:
            raise UserError(f"config key '{dotted}' is given twice on the command line ({seen[dotted]} and {text}); "
                            "keep one")
        seen[dotted] = text
        apply_override(cfg, text)


def read_config_tree(path, seen=()):
    """A config file as a nested dict, its `base:` chain merged in (the file's own values win)."""
    path = Path(path)
    if path.resolve() in seen:
        raise UserError(f"config file '{path}' is its own base (through `base:`); break the loop")
    tree = upgrade_config(load_yaml_mapping(path, "config file", "configs live in configs/"))
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise UserError(f"'base' in '{path}' must be the path of another config file")
    merged = read_config_tree(base, (*seen, path.resolve()))
    for key, value in tree.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_config(path=None, overrides=()):
    """Defaults, then the YAML file (and its bases), then '--key=value' overrides; validated."""
    cfg = Config()
    if path is not None:
        for dotted, value in _flatten(read_config_tree(path)):
            set_value(cfg, dotted, value)
        if not cfg.name:
            cfg.name = Path(path).stem
    apply_overrides(cfg, overrides)
    if not cfg.name:
        cfg.name = "run"
    validate(cfg)
    return cfg


def validate(cfg):
    """Reject impossible combinations, naming the key and what would work."""
    for dotted, options in CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value not in options:
            raise UserError(f"config key '{dotted}' is '{value}'; choose one of: {', '.join(options)}")
    _validate_ranges(cfg.model, cfg.data, cfg.train)
    _validate_sizes(cfg)
    (_validate_modular if cfg.data.kind == "modular" else _validate_text)(cfg.data)


MAX_EVALUATIONS = 10**6  # an evaluation grid this long would take longer to build than to regret
MAX_PARAMETERS = 10**10  # 40 GB of fp32 weights, before the optimizer's two copies


def _validate_sizes(cfg):
    """Whole numbers a run can hold (torch keeps steps and seeds as int64), seeds from 0, and a
    model and an evaluation grid that fit in memory: a typo of a few digits is refused here, not
    met as a traceback (or a hang) minutes later."""
    for section in ("", *SECTIONS):
        holder = getattr(cfg, section) if section else cfg
        for f in dataclasses.fields(holder):
            value, dotted = getattr(holder, f.name), f"{section}.{f.name}".lstrip(".")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
                raise UserError(f"config key '{dotted}' is {shorten(value)}, too large for any run (at most {MAX_INT})")
    if cfg.seed < 0:
        raise UserError(f"config key 'seed' must be zero or more, got {cfg.seed}")
    m, t = cfg.model, cfg.train
    params = m.n_layer * (4 * m.n_embd * m.n_embd + 2 * m.n_embd * m.d_ff)
    if params > MAX_PARAMETERS:
        raise UserError(f"model.n_layer, n_embd and d_ff give about {params:.1e} parameters, more than fit in "
                        f"memory (at most {MAX_PARAMETERS:.0e}); make the model smaller")
    fixed = t.eval_schedule == "fixed"
    points = t.max_steps // t.eval_interval if fixed else t.eval_per_decade * math.log10(t.max_steps)
    if points > MAX_EVALUATIONS:
        key = "eval_interval" if fixed else "eval_per_decade"
        raise UserError(f"train.max_steps={t.max_steps} with train.{key}={getattr(t, key)} asks for {points:.2g} "
                        f"evaluations (at most {MAX_EVALUATIONS:.0e}); evaluate less often")


def _validate_ranges(m, d, t):
    positive = {
        "model.n_layer": m.n_layer, "model.n_head": m.n_head, "model.n_embd": m.n_embd,
        "model.d_ff": m.d_ff, "model.init_scale": m.init_scale, "train.batch_size": t.batch_size,
        "train.max_steps": t.max_steps, "train.eval_interval": t.eval_interval,
        "train.eval_per_decade": t.eval_per_decade, "train.eval_batch_size": t.eval_batch_size,
        "train.checkpoint_interval": t.checkpoint_interval, "train.lr": t.lr, "train.eps": t.eps,
    }
    nonnegative = {
        "train.weight_decay": t.weight_decay, "train.warmup_steps": t.warmup_steps,
        "train.grad_clip": t.grad_clip, "train.grokfast_lambda": t.grokfast_lambda,
        "train.stop_patience": t.stop_patience, "train.threads": t.threads, "train.eval_subset": t.eval_subset,
        "train.eval_full_gap": t.eval_full_gap, "data.mask_first": d.mask_first, "data.data_seed": d.data_seed,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"config key '{key}' must be positive, got {value}")
    for key, value in nonnegative.items():
        if value < 0:
            raise UserError(f"config key '{key}' must be zero or more, got {value}")
    if m.n_embd % m.n_head:
        raise UserError(f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
    for key, value in (("model.dropout", m.dropout), ("train.grokfast_alpha", t.grokfast_alpha)):
        if not 0.0 <= value < 1.0:
            raise UserError(f"config key '{key}' must be in [0, 1), got {value}")
    if not 0.0 < t.drop_train_acc <= 1.0:
        raise UserError(f"config key 'train.drop_train_acc' must be in (0, 1], got {t.drop_train_acc}")
    if not 0.0 <= t.min_lr_frac <= 1.0:
        raise UserError(f"config key 'train.min_lr_frac' must be in [0, 1], got {t.min_lr_frac}")
    unknown_splits = [x for x in t.eval_splits if x not in ("train", "val", "test")]
    if unknown_splits or not t.eval_splits:
        raise UserError(f"train.eval_splits must list some of train, val, test; got {t.eval_splits}")
    if not all(0.0 <= b < 1.0 for b in t.betas):
        raise UserError(f"train.betas must each be in [0, 1), got {t.betas}")


def _validate_modular(d):
    check_operation(d.op, d.p)
    if d.tokenizer == "gpt2":
        raise UserError("modular data uses data.tokenizer 'number' or 'char', not 'gpt2'")
    if not (0 < d.train_frac <= 1 and 0 <= d.val_frac < 1):
        raise UserError("data.train_frac must be in (0, 1] and data.val_frac in [0, 1)")
    if d.train_frac + d.val_frac > 1 + 1e-9:
        raise UserError(
            f"data.train_frac + data.val_frac = {d.train_frac + d.val_frac:g} is more than 1;"
            " the test split gets what is left, so they must sum to at most 1"
        )


def _validate_text(d):
    if d.tokenizer == "number":
        raise UserError("text data uses data.tokenizer 'char' or 'gpt2', not 'number'")
    if not d.text or not all(isinstance(s, str) and s for s in d.text):
        raise UserError("data.kind 'text' needs data.text: a list of non-empty strings")


def config_to_dict(cfg):
    return dataclasses.asdict(cfg)


def config_from_dict(tree):
    """Rebuild a Config from a checkpoint's dict (or a run's config.yaml), derived model values included."""
    cfg = Config()
    for dotted, value in _flatten(upgrade_config(tree)):
        if dotted in DERIVED:
            section, key = dotted.split(".")
            setattr(getattr(cfg, section), key, value)
        else:
            set_value(cfg, dotted, value)
    return cfg


def describe_keys():
    """Every key with its default, for --help."""
    lines, cfg = [], Config()
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            for g in dataclasses.fields(SECTIONS[f.name]):
                dotted = f"{f.name}.{g.name}"
                if dotted in DERIVED:
                    continue
                default = getattr(getattr(cfg, f.name), g.name)
                choices = f"  {{{', '.join(CHOICES[dotted])}}}" if dotted in CHOICES else ""
                lines.append(f"  --{dotted}={default!r}{choices}")
        else:
            lines.append(f"  --{f.name}={getattr(cfg, f.name)!r}")
    return "\n".join(lines)
