"""Tokenizers (character, number, GPT-2 BPE) and turning (prompt, completion) pairs into tensors."""

import re

import torch

from runlog import UserError
from tasks import OPERATIONS

PAD, EOS = "<pad>", "<eos>"  # EOS also starts every sequence, as GPT-2's <|endoftext|> does
# Number tokens: an operation's name is one token ('x2+y2', 's5', '/-'; the longest name first,
# so 's5conj' is not read as 's5'), then every run of digits (a residue, or a permutation written
# as '01243'), then every other non-space character.
NUMBER_PIECES = re.compile("|".join([*(re.escape(op) for op in sorted(OPERATIONS, key=len, reverse=True)
                                      if len(op) > 1), r"\d+", r"\S"]))


class SymbolTokenizer:
    """A fixed list of symbols. 'char': every character is a token; 'number': every run of
    digits is one token (a residue mod p, as in Power et al. 2022), so is an operation's name,
    and every other non-space character is one token (NUMBER_PIECES)."""

    def __init__(self, kind, symbols):
        self.kind = kind
        self.symbols = [PAD, EOS] + list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.pad_id, self.eos_id = 0, 1
        self.vocab_size = len(self.symbols)

    def split(self, text):
        return list(text) if self.kind == "char" else NUMBER_PIECES.findall(text)

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
    # ASCII digits only: '²' is a digit to str.isdigit() but no number to int()
    number = lambda s: s.isascii() and s.isdigit()
    symbols = sorted({s for t in texts for s in probe.split(t)}, key=lambda s: (number(s), len(s), s))
    if kind == "number":  # residues in numeric order, so token ids read naturally
        symbols = [s for s in symbols if not number(s)] + sorted(
            (s for s in symbols if number(s)), key=int
        )
    return SymbolTokenizer(kind, symbols)


def tokenizer_from_state(state):
    if state["kind"] == "gpt2":
        return GPT2Tokenizer()
    return SymbolTokenizer(state["kind"], state["symbols"])


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


def is_right_padded(real):
    """True if in every row of real (B, T; True = real token) the real tokens come first and the
    pads after: then plain causal attention hides the pads, and no mask is needed."""
    lengths = real.sum(dim=1, keepdim=True)
    return bool((real.bool() == (torch.arange(real.size(1), device=real.device)[None, :] < lengths)).all())


def batch_model_inputs(batch):
    """(attention_mask, positions) for the model, each None where it can be left out.

    Right padding needs no mask: under causal attention a real token only sees the tokens
    before it, which are all real, so plain causal attention (no mask to build or apply) gives
    the same outputs at every real position. Only left or inner padding keeps the mask. The last
    block and the head then run only at the columns where some row carries loss (for
    equations, the answer), since nothing else reaches the loss.
    """
    mask, loss_mask = batch["attention_mask"], batch["loss_mask"]
    if not is_right_padded(mask):
        return mask, None
    used = loss_mask.any(dim=0)
    positions = None if bool(used.all()) else used.nonzero().flatten()
    return None, positions
