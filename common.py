"""What the scripts share: the run config, tokenizers, batching, checkpoints, seeding, devices.

Every default of every setting lives in the dataclasses below; configs/*.yaml only set values.
"""

import contextlib
import dataclasses
import difflib
import json
import os
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_type_hints

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

from model import GPT, GPTConfig


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def run_cli(main):
    """Run main(), turning a UserError into a one-line message and a non-zero exit."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------- config

@dataclass
class DataConfig:
    kind: str = "modular"  # "modular": a op b = c (mod p); "text": the strings below
    tokenizer: str = "number"  # "number": one token per residue; "char"; "gpt2" (tiktoken r50k_base)
    # modular arithmetic (generate_data.py)
    op: str = "/"
    p: int = 97
    train_frac: float = 0.5  # Power et al. 2022, Figure 1: 50% of all equations for training
    val_frac: float = 0.25  # the rest after train and val is the test split
    data_seed: int = 0  # shuffles the split; independent of the model seed
    data_dir: str = ""  # default: data/<op><p>_train<f>_val<f>_seed<s>
    # text memorisation (sanity checks)
    text: list = field(default_factory=list)  # training strings, one example each
    mask_first: int = 0  # leave the first N target tokens of each example out of the loss


@dataclass
class TrainConfig:
    optimizer: str = "adamw"  # "adamw" (decoupled weight decay) or "adam" (L2 added to the gradient)
    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 1.0
    decay: str = "matrices"  # which parameters decay: "matrices" (2-D weights) or "all"
    warmup_steps: int = 10
    schedule: str = "constant"  # after warmup: "constant" or "cosine" (down to min_lr_frac * lr)
    min_lr_frac: float = 0.1
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
    stop_patience: int = 0  # stop once val accuracy >= stop_val_acc for this many evals; 0 = never
    stop_val_acc: float = 1.0
    checkpoint_interval: int = 1000  # steps between overwrites of last.pt
    log_checkpoints: bool = True  # also keep step_1000.pt, step_10000.pt, ... (powers of ten)
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda", "mps"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; weights and optimizer stay fp32)
    compile: bool = False  # torch.compile the model
    # "auto": SDPA's math kernel on CPU, where it beats the flash kernel on these few-token
    # sequences (bench.py measures it), PyTorch's own pick elsewhere; "default": always PyTorch's.
    attention_kernel: str = "auto"
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
    "data.kind": ["modular", "text"],
    "data.tokenizer": ["number", "char", "gpt2"],
    "train.optimizer": ["adamw", "adam"],
    "train.decay": ["matrices", "all"],
    "train.schedule": ["constant", "cosine"],
    "train.eval_schedule": ["log", "fixed"],
    "train.device": ["auto", "cpu", "cuda", "mps"],
    "train.precision": ["fp32", "bf16"],
    "train.attention_kernel": ["auto", "default"],
}
DERIVED = {"model.vocab_size", "model.block_size"}  # set from the data, never by the user
SECTIONS = {"model": GPTConfig, "data": DataConfig, "train": TrainConfig}


def _coerce(key, value, kind):
    """Check one value against its declared type; ints pass as floats, '1e-3' strings as floats."""
    if kind is float and isinstance(value, str):
        try:
            return float(value)
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
            f"config key '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    if key == "train.betas":
        try:
            value = [float(b) for b in value]
        except (TypeError, ValueError):
            value = []
        if len(value) != 2:
            raise UserError(f"config key 'train.betas' must be two numbers, like [0.9, 0.98]")
    return value


def _unknown_key(key, valid):
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return UserError(f"unknown config key '{key}'.{hint} Valid keys: {', '.join(valid)}")


def set_value(cfg, dotted, value):
    """Set cfg.<section>.<key> (or a top-level key) from a dotted name, with type checks."""
    parts = dotted.split(".")
    top = [f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS]
    if len(parts) == 1:
        if parts[0] in SECTIONS:
            raise UserError(f"'{dotted}' is a section; set one of its keys, like --{dotted}.KEY=VALUE")
        if parts[0] not in top:
            raise _unknown_key(dotted, top + [f"{s}.KEY" for s in SECTIONS])
        kind = get_type_hints(Config)[parts[0]]
        setattr(cfg, parts[0], _coerce(dotted, value, kind))
        return
    section, key = parts[0], ".".join(parts[1:])
    if section not in SECTIONS:
        raise _unknown_key(dotted, top + list(SECTIONS))
    valid = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in valid:
        raise _unknown_key(dotted, [f"{section}.{k}" for k in valid])
    if dotted in DERIVED:
        raise UserError(f"'{dotted}' is computed from the data; remove it from the config")
    kind = get_type_hints(SECTIONS[section])[key]
    setattr(getattr(cfg, section), key, _coerce(dotted, value, kind))


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key in SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise UserError(f"config section '{key}' must be a mapping of keys to values")
            yield from _flatten(value, f"{key}.")
        else:
            yield dotted, value


def parse_override(text):
    """'--train.lr=3e-4' -> ('train.lr', 3e-4), the value read as YAML."""
    if not text.startswith("--") or "=" not in text:
        raise UserError(f"cannot read override '{text}': write it as --section.key=value")
    key, raw = text[2:].split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path=None, overrides=()):
    """Defaults, then the YAML file, then '--key=value' overrides; checked and validated."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file '{path}' not found (configs live in configs/)")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}")
        if not isinstance(tree, dict):
            raise UserError(f"config file '{path}' must be a mapping of sections to keys")
        for dotted, value in _flatten(tree):
            set_value(cfg, dotted, value)
        if not cfg.name:
            cfg.name = path.stem
    for text in overrides:
        set_value(cfg, *parse_override(text))
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
    m, d, t = cfg.model, cfg.data, cfg.train
    positive = {
        "model.n_layer": m.n_layer, "model.n_head": m.n_head, "model.n_embd": m.n_embd,
        "model.d_ff": m.d_ff, "train.batch_size": t.batch_size, "train.max_steps": t.max_steps,
        "train.eval_interval": t.eval_interval, "train.eval_per_decade": t.eval_per_decade,
        "train.eval_batch_size": t.eval_batch_size, "train.checkpoint_interval": t.checkpoint_interval,
        "train.lr": t.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"config key '{key}' must be positive, got {value}")
    nonnegative = {
        "train.weight_decay": t.weight_decay, "train.warmup_steps": t.warmup_steps,
        "train.grad_clip": t.grad_clip, "train.grokfast_lambda": t.grokfast_lambda,
        "train.stop_patience": t.stop_patience, "train.threads": t.threads,
        "data.mask_first": d.mask_first, "data.data_seed": d.data_seed,
    }
    for key, value in nonnegative.items():
        if value < 0:
            raise UserError(f"config key '{key}' must be zero or more, got {value}")
    if m.n_embd % m.n_head:
        raise UserError(f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
    if not 0.0 <= m.dropout < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if not 0.0 <= t.grokfast_alpha < 1.0:
        raise UserError(f"train.grokfast_alpha must be in [0, 1), got {t.grokfast_alpha}")
    unknown_splits = [x for x in t.eval_splits if x not in ("train", "val", "test")]
    if unknown_splits or not t.eval_splits:
        raise UserError(f"train.eval_splits must list some of train, val, test; got {t.eval_splits}")
    if not all(0.0 <= b < 1.0 for b in t.betas):
        raise UserError(f"train.betas must each be in [0, 1), got {t.betas}")
    if d.kind == "modular":
        if d.tokenizer == "gpt2":
            raise UserError("modular data uses data.tokenizer 'number' or 'char', not 'gpt2'")
        if not (0 < d.train_frac <= 1 and 0 <= d.val_frac < 1):
            raise UserError(f"data.train_frac must be in (0, 1] and data.val_frac in [0, 1)")
        if d.train_frac + d.val_frac > 1 + 1e-9:
            raise UserError(
                f"data.train_frac + data.val_frac = {d.train_frac + d.val_frac:g} is more than 1;"
                " the test split gets what is left, so they must sum to at most 1"
            )
    else:
        if d.tokenizer == "number":
            raise UserError("text data uses data.tokenizer 'char' or 'gpt2', not 'number'")
        if not d.text or not all(isinstance(s, str) and s for s in d.text):
            raise UserError("data.kind 'text' needs data.text: a list of non-empty strings")


def config_to_dict(cfg):
    return dataclasses.asdict(cfg)


def config_from_dict(tree):
    """Rebuild a Config from a checkpoint's dict, derived model values included."""
    cfg = Config()
    for dotted, value in _flatten(tree):
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


# ----------------------------------------------------------------------------- tokenizers

PAD, EOS = "<pad>", "<eos>"  # EOS also starts every sequence, as GPT-2's <|endoftext|> does


class SymbolTokenizer:
    """A fixed list of symbols. 'char': every character is a token; 'number': every run of
    digits is one token (a residue mod p, as in Power et al. 2022) and every other
    non-space character is one token."""

    def __init__(self, kind, symbols):
        self.kind = kind
        self.symbols = [PAD, EOS] + list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.pad_id, self.eos_id = 0, 1
        self.vocab_size = len(self.symbols)

    def split(self, text):
        return list(text) if self.kind == "char" else re.findall(r"\d+|\S", text)

    def encode(self, text):
        pieces = self.split(text)
        unknown = [s for s in pieces if s not in self.index]
        if unknown:
            known = "".join(self.symbols[2:]) if self.kind == "char" else " ".join(self.symbols[2:])
            raise UserError(
                f"text {text!r} contains {unknown[0]!r}, which is not in this model's "
                f"{self.kind}-level vocabulary (known: {known[:200]})"
            )
        return [self.index[s] for s in pieces]

    def decode(self, ids):
        return "".join(self.symbols[i] for i in ids if i > 1)

    def state(self):
        return {"kind": self.kind, "symbols": self.symbols[2:]}


def tiktoken_encoding():
    """GPT-2's BPE (tiktoken's r50k_base). Offline it needs TIKTOKEN_CACHE_DIR to hold the file."""
    import tiktoken

    try:
        return tiktoken.get_encoding("r50k_base")
    except Exception as e:
        raise UserError(
            "could not load the GPT-2 tokenizer (tiktoken 'r50k_base'): tiktoken downloads it on "
            "first use and that failed. Without internet, set TIKTOKEN_CACHE_DIR to a folder "
            f"holding the cached file (this repo's CI uses ../shared/tiktoken_cache). ({type(e).__name__})"
        )


class GPT2Tokenizer:
    """GPT-2 BPE with <|endoftext|> (50256) as EOS and one extra id (50257) for padding."""

    kind = "gpt2"

    def __init__(self):
        self.encoding = tiktoken_encoding()
        self.eos_id = self.encoding.eot_token
        self.pad_id = self.encoding.n_vocab
        self.vocab_size = self.encoding.n_vocab + 1

    def encode(self, text):
        return self.encoding.encode_ordinary(text)

    def decode(self, ids):
        return self.encoding.decode([i for i in ids if i < self.eos_id])

    def state(self):
        return {"kind": "gpt2"}


def make_tokenizer(kind, texts=()):
    """A tokenizer of the given kind; symbol vocabularies are the sorted symbols of texts."""
    if kind == "gpt2":
        return GPT2Tokenizer()
    probe = SymbolTokenizer(kind, [])
    symbols = sorted({s for t in texts for s in probe.split(t)}, key=lambda s: (s.isdigit(), len(s), s))
    if kind == "number":  # residues in numeric order, so token ids read naturally
        symbols = [s for s in symbols if not s.isdigit()] + sorted(
            (s for s in symbols if s.isdigit()), key=int
        )
    return SymbolTokenizer(kind, symbols)


def tokenizer_from_state(state):
    if state["kind"] == "gpt2":
        return GPT2Tokenizer()
    return SymbolTokenizer(state["kind"], state["symbols"])


# ----------------------------------------------------------------------------- batches

def encode_examples(tokenizer, examples, mask_first=0):
    """Examples (prompt, completion) -> padded tensors (N, T) for the model.

    Each sequence is EOS + prompt + completion + EOS; the model reads all but the last token
    and predicts all but the first. Loss positions: the completion and the final EOS, minus the
    first mask_first targets. Returns dict of idx, targets, loss_mask, attention_mask.
    """
    rows, masks = [], []
    for prompt, completion in examples:
        prompt_ids = tokenizer.encode(prompt)
        ids = [tokenizer.eos_id] + prompt_ids + tokenizer.encode(completion) + [tokenizer.eos_id]
        rows.append(ids)
        n_targets = len(ids) - 1
        masks.append([j >= len(prompt_ids) and j >= mask_first for j in range(n_targets)])
    T = max(len(r) for r in rows) - 1
    N = len(rows)
    idx = torch.full((N, T), tokenizer.pad_id, dtype=torch.long)
    targets = torch.full((N, T), tokenizer.pad_id, dtype=torch.long)
    loss_mask = torch.zeros((N, T), dtype=torch.bool)
    attention_mask = torch.zeros((N, T), dtype=torch.bool)
    for i, (ids, mask) in enumerate(zip(rows, masks)):
        n = len(ids) - 1
        idx[i, :n] = torch.tensor(ids[:-1])
        targets[i, :n] = torch.tensor(ids[1:])
        loss_mask[i, :n] = torch.tensor(mask)
        attention_mask[i, :n] = True
    return {"idx": idx, "targets": targets, "loss_mask": loss_mask, "attention_mask": attention_mask}


def slice_batch(batch, index):
    return {k: v[index] for k, v in batch.items()}


def batch_model_inputs(batch):
    """(attention_mask, positions) for the model, each None where it can be left out.

    Right padding needs no mask: under causal attention a real token only sees the tokens
    before it, which are all real, so plain causal attention (no mask to build or apply) gives
    the same outputs at every real position. Only left or inner padding keeps the mask. The last
    block and the head then run only at the columns where some row carries loss (for
    equations, the answer), since nothing else reaches the loss.
    """
    mask, loss_mask = batch["attention_mask"], batch["loss_mask"]
    lengths = mask.sum(dim=1, keepdim=True)
    prefix = torch.arange(mask.size(1), device=mask.device)[None, :] < lengths
    if not bool((mask.bool() == prefix).all()):
        return mask, None
    used = loss_mask.any(dim=0)
    positions = None if bool(used.all()) else used.nonzero().flatten()
    return None, positions


# ----------------------------------------------------------------------------- runtime

def forward_context(device, precision="fp32", attention_kernel="auto"):
    """A factory of contexts to run the model in: bf16 autocast and the attention kernel choice."""
    @contextlib.contextmanager
    def context():
        with contextlib.ExitStack() as stack:
            if precision == "bf16":
                stack.enter_context(torch.autocast(device_type=device, dtype=torch.bfloat16))
            if attention_kernel == "auto" and device == "cpu":
                stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            yield
    return context


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name):
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA GPU is visible; use --train.device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device is 'mps' but MPS is not available; use --train.device=auto")
    return name


def rng_state():
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, state):
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resolve_checkpoint(path):
    """A checkpoint file, or a run directory (its checkpoints/last.pt)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"'{path}' is a directory without checkpoints/last.pt; pass a .pt file or a run directory")
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' not found; pass a .pt file or a run directory (runs/NAME)")
    return path


def load_checkpoint(path):
    """Load a checkpoint of this repo (tensors and plain values only: weights_only=True)."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"'{path}' is not a readable checkpoint (truncated, or not written by this repo): "
            f"{str(e).splitlines()[0][:160]}"
        )
    if not isinstance(ckpt, dict) or not {"model", "config", "tokenizer"} <= set(ckpt):
        raise UserError(f"'{path}' is not a checkpoint of this repo (it lacks model, config, tokenizer)")
    return ckpt


def model_from_checkpoint(ckpt):
    """Rebuild (model in eval mode, tokenizer, config) from a loaded checkpoint."""
    cfg = config_from_dict(ckpt["config"])
    model = GPT(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not match its model config: {str(e).splitlines()[0][:200]}")
    model.eval()
    return model, tokenizer_from_state(ckpt["tokenizer"]), cfg


def dump_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2) + "\n")


# ----------------------------------------------------------------------------- run logs

def read_metrics(run_dir):
    """The records of a run directory's metrics.jsonl, in step order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no metrics.jsonl; pass run directories written by train.py")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run_config(run_dir):
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no config.yaml; pass run directories written by train.py")
    return yaml.safe_load(path.read_text())


def first_step(records, key, level):
    """First logged step where records[key] >= level, or None if it never gets there."""
    return next((r["step"] for r in records if r.get(key, -1.0) >= level), None)


def grokking_summary(records, heldout="test"):
    """Steps to reach 99% and 100% accuracy on train and on a held-out split, and the lag
    between them (held-out minus train; zero or negative when the two come together or
    generalisation comes first). None where a level was never reached within the budget."""
    out = {"last_step": records[-1]["step"]}
    for level, tag in ((0.99, "99"), (1.0, "100")):
        train_step = first_step(records, "train_acc", level)
        held_step = first_step(records, f"{heldout}_acc", level)
        out[f"train_{tag}"], out[f"{heldout}_{tag}"] = train_step, held_step
        out[f"lag_{tag}"] = None if train_step is None or held_step is None else held_step - train_step
    out["grokked"] = out[f"{heldout}_99"] is not None
    for key in ("train_loss", "train_acc", f"{heldout}_loss", f"{heldout}_acc"):
        out[f"final_{key}"] = records[-1].get(key)
    return out
