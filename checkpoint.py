"""One checkpoint format: save (atomic), find, load (weights_only) and rebuild a model from it.

A checkpoint is a dict of tensors and plain values: the TrainState's state_dict (model,
optimizer, filters, batch order, step, RNG) plus config, tokenizer and the data split's identity.
A shipped, weights-only checkpoint (export_checkpoint.py) keeps model, config, tokenizer, step, data.
"""

import io
from pathlib import Path

import torch

from config import config_from_dict
from model import GPT
from runlog import UserError, cannot_write, write_atomic
from tasks import data_identity, first_difference
from tokens import tokenizer_from_state


def save_checkpoint(path, state):
    """Write atomically: a crash leaves the old file or the new one, never half of one, and no
    temp file. A full disk or a denied permission is a WriteError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(path.parent, e) from None
    # Serialised in memory first: torch.save writing to a full disk reports only "unexpected pos",
    # while a plain write reports the cause. A checkpoint here is a few MB.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, lambda f: f.write(buffer.getbuffer()), binary=True)


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
    if path.stat().st_size == 0:
        raise UserError(f"'{path}' is empty (0 bytes): a write cut short, or not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"'{path}' is not a readable checkpoint (truncated, or not written by this repo): "
            f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:160]}"
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


def check_same_data(ckpt, data, where):
    """Refuse to continue a run on other data than it was trained on (its test set would leak)."""
    stored, wanted = ckpt.get("data") or {}, data_identity(data)
    key = first_difference(stored, wanted)
    if key is not None:
        raise UserError(f"the run in '{where}' was trained with data.{key}={stored.get(key, False)!r}; resuming "
                        f"it with data.{key}={wanted.get(key, False)!r} would change its examples or split. Drop "
                        "that override, or start a new run with --config and --out")
