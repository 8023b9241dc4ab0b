"""A small decoder-only transformer in the style of nanoGPT, with pad-aware attention.

Shape letters used in the comments:
    B batch size, T sequence length, C embedding width (n_embd),
    H attention heads, D head width (C // H), V vocabulary size.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


# How attention is computed (GPTConfig.attention): "sdpa" is torch's scaled_dot_product_attention,
# whichever kernel runtime.forward_context picks; "explicit" is explicit_attention below.
ATTENTION_KINDS = ("sdpa", "explicit")


def explicit_attention(q, k, v, mask, dropout=0.0):
    """softmax(q k^T / sqrt(D)) v, written out; mask (..., Tq, T) is True where a query may attend.

    On a CPU and 5-13 token sequences the attention alone runs forward and backward about 2.5x
    as fast as SDPA's math kernel (one thread, bf16), and far faster than its flash kernel: their
    softmax loops over rows of 12 keys, while exp, max and sum here each sweep the whole tensor. Scores
    and softmax are fp32, as SDPA's math kernel keeps them under bf16 autocast.
    """
    scores = (q @ k.transpose(-2, -1)).float() * (1.0 / math.sqrt(q.size(-1)))
    scores = scores.masked_fill(~mask, float("-inf"))
    # Subtracting the row max keeps exp finite; softmax does not change with it, so no gradient.
    weights = (scores - scores.detach().amax(dim=-1, keepdim=True)).exp()
    weights = F.dropout(weights / weights.sum(dim=-1, keepdim=True), dropout)
    return weights.to(v.dtype) @ v


def mean_token_loss(logits, targets, loss_mask, token_loss=None):
    """Mean over the positions where loss_mask is True (0 if there are none) of token_loss, a
    function of logits (N, V) and targets (N,) giving the loss at each (N,); None is softmax
    cross-entropy. In fp32, also when bf16 autocast hands the logits over in bf16."""
    logits, flat_targets = logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1)
    if token_loss is None:
        per_token = F.cross_entropy(logits, flat_targets, reduction="none")
    else:
        per_token = token_loss(logits, flat_targets)
    weights = loss_mask.float()
    return (per_token.view(targets.shape) * weights).sum() / weights.sum().clamp(min=1.0)


class LayerNorm(nn.Module):
    """LayerNorm whose bias can be switched off (torch's own cannot before 2.1)."""

    def __init__(self, width, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.explicit = config.attention == "explicit"
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask, positions=None):
        """x (B, T, C); positions: optional columns (P,) at which to compute outputs, queries only there."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        if positions is not None:
            q = q[:, positions]  # (B, P, C)
            if attn_mask is None:
                attn_mask = torch.arange(T, device=x.device)[None, :] <= positions[:, None]  # (P, T)
            else:
                attn_mask = attn_mask[:, :, positions]  # (B, 1, P, T)
        # (B, T, C) -> (B, H, T, D); the query length is P when positions are given
        q = q.view(B, q.size(1), self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        if self.explicit:
            causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
            y = explicit_attention(q, k, v, causal if attn_mask is None else attn_mask, dropout)
        else:  # attn_mask None means plain causal attention (no pads), which SDPA does fastest
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                                               dropout_p=dropout)
        # (B, H, Tq, D) -> (B, Tq, C)
        y = y.transpose(1, 2).contiguous().view(B, -1, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.n_embd, config.d_ff, bias=config.bias)
        self.down = nn.Linear(config.d_ff, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask, positions=None):
        """With positions, only those columns come out: (B, P, C) instead of (B, T, C)."""
        attended = self.attn(self.ln_1(x), attn_mask, positions)
        x = (x if positions is None else x[:, positions]) + attended
        return x + self.mlp(self.ln_2(x))


@dataclass
class GPTConfig:
    """Architecture. vocab_size and block_size are derived from the data by train.py."""

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    d_ff: int = 512  # MLP width; the brief fixes it at 512 rather than nanoGPT's 4 * n_embd
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = False  # share the token embedding with the output head
    init_scale: float = 1.0  # multiplies every initial weight's std (GPT-2's 0.02 at 1.0)
    # "sdpa" or "explicit" (ATTENTION_KINDS): the same function, rounded differently; explicit is
    # the faster on a CPU with these few-token rows (bench.py)
    attention: str = "sdpa"
    vocab_size: int = 0
    block_size: int = 0


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("GPTConfig needs vocab_size and block_size set from the data")
        if config.attention not in ATTENTION_KINDS:
            raise ValueError(f"GPTConfig.attention {config.attention!r} is not one of {ATTENTION_KINDS}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        std = 0.02 * config.init_scale

        def init(module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

        self.apply(init)  # children before parents, the order the seeded draws have always had
        # GPT-2's scaled init of the projections that write into the residual stream.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * config.n_layer))

    def num_params(self, non_embedding=True):
        """Parameter count; non_embedding leaves out the token and position tables."""
        skip = {id(self.tok_emb.weight), id(self.pos_emb.weight)} if non_embedding else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    @staticmethod
    def attention_mask_4d(attention_mask, T):
        """Boolean (B, 1, T, T) mask, True where a query may attend to a key.

        Combines causality with the key-padding mask (B, T; True = real token). A query at a
        pad position keeps its own key so that its softmax row is never empty (no NaNs);
        its output is garbage but nothing real attends to it and it carries no loss.
        """
        causal = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
        keys = attention_mask[:, None, None, :].bool()  # (B, 1, 1, T)
        diagonal = torch.eye(T, dtype=torch.bool, device=attention_mask.device)
        return (causal & keys) | diagonal

    def forward(self, idx, targets=None, loss_mask=None, attention_mask=None, positions=None, token_loss=None):
        """idx, targets, loss_mask, attention_mask: (B, T).

        Returns (logits, loss). The loss is the mean of token_loss (default: softmax
        cross-entropy; see mean_token_loss) over positions where loss_mask is True (all
        positions if no mask) and never over pads. positions (P,), optional: the columns where
        logits are wanted, the same for every row (say, where the answer of a
        fixed-format equation sits); the last block then runs only there, and logits are
        (B, P, V) instead of (B, T, V). The loss is the same either way if the loss lies there.
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
        attn_mask = None if attention_mask is None else self.attention_mask_4d(attention_mask, T)
        if attention_mask is None:
            pos = torch.arange(T, device=idx.device)  # (T,)
        else:
            # (B, T), counted over the real tokens only, so left padding shifts nothing
            pos = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, positions if i == len(self.blocks) - 1 else None)
        logits = self.head(self.ln_f(x))  # (B, T or P, V)
        if targets is None:
            return logits, None
        if loss_mask is None:
            loss_mask = attention_mask if attention_mask is not None else torch.ones_like(targets, dtype=torch.bool)
        elif attention_mask is not None:
            loss_mask = loss_mask.bool() & attention_mask.bool()
        if positions is not None:
            targets, loss_mask = targets[:, positions], loss_mask[:, positions]
        return logits, mean_token_loss(logits, targets, loss_mask, token_loss)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=0.0, top_k=None, eos_id=None, generator=None):
        """Extend every row of idx (B, T) by up to max_new_tokens; (B, T + new) comes back.

        temperature 0 is greedy decoding; top_k keeps only the k most likely tokens. Rows finish
        independently: a row that has produced eos_id gets eos_id from then on, and generation
        ends once every row has produced it. All rows must be real tokens (no padding).
        """
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature == 0.0:
                next_id = logits.argmax(dim=-1)  # (B,)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)[:, 0]
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)
                finished |= next_id == eos_id
            idx = torch.cat([idx, next_id[:, None]], dim=1)
            if bool(finished.all()):
                break
        return idx
