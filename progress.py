"""Progress measures of grokking: the Fourier structure a model of modular arithmetic builds.

Nanda et al. 2023 ("Progress measures for grokking via mechanistic interpretability", arXiv
2301.05217) found that a transformer trained on a + b mod p embeds the residues along a few key
frequencies and reads the answer off cos(w(a + b - c)), and that measures of this circuit move long
before test accuracy does. The same holds one step removed for * and /: with a primitive root g,
a = g^i and b = g^j give a * b = g^(i + j) and a / b = g^(i - j), so on the nonzero residues listed
by their discrete logarithm (1, g, g^2, ..., g^(p-2)) the operation is addition or subtraction in a
cyclic group of order p - 1. The "group order" below is that listing: the residues 0..p-1 in natural
order for + and -, the residues 1..p-1 in discrete-log order for * and / (0 is outside the group).

Logged at every evaluation of a number-token run on modular data (metrics.TASK_METRICS):
    fourier_top5_share   share of the token embedding's spectral power (over the group order,
                         the constant term left out) in its 5 strongest frequencies
    fourier_key_freqs    those 5 frequencies, strongest first (k: k cycles around the group)
    fourier_full_loss    cross-entropy of the answer token on the first LOSS_PAIRS (1024) pairs of
                         the training split, softmax over the group's residues only (the
                         baseline of the two below; for * and / the pairs with a = 0 left out)
    fourier_restricted_loss  the same with the logits kept only along the key frequencies of a + b
                         (a - b, i + j, i - j): Nanda et al.'s restricted loss, section 5.1
    fourier_excluded_loss    the same with those components removed: their excluded loss
Skipped (with a note, printed once by train.py) for character tokens, where a residue is no one
token, and where the group has no more frequencies than the 5 counted (the share would be 1).
Skipped too for the other operations of the paper, where the answer is no function of i + j or
i - j in any order of the residues: the polynomials (x^2 + y^2 ...) and x/y-or-x-y, whose
circuits, if a model builds any, are not these; and S5, a group that is not abelian, whose
circuits would be read off its matrix representations (Chughtai et al. 2023, "A toy model of
universality", arXiv 2302.03025) rather than one-dimensional frequencies: not implemented here.
Those runs log accuracy, loss and the weight norm only.
The losses take one forward pass (at the answer position, in the run's precision), a small part
of an evaluation's time.
"""

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tasks import format_number, is_prime, number_width

# Five: as many as the key frequencies of Nanda et al.'s main model (a + b mod 113); what the
# shipped checkpoints hold is in experiments/div97_progress.
TOP_FREQUENCIES = 5
SHARE_KEY = f"fourier_top{TOP_FREQUENCIES}_share"
KEY_FREQS_KEY = "fourier_key_freqs"
# The losses read the first LOSS_PAIRS rows of the training split (shuffled: the same random sample
# at every evaluation), about 10 per value of s at p = 97: a forward pass about a ninth the size of
# an evaluation's three splits, where the whole training split would make it half as long again.
LOSS_PAIRS = 1024

# op -> (listed by discrete log, sign of b): the answer's index in the group order is i + sign * j.
CYCLIC_FORM = {"+": (False, 1), "-": (False, -1), "*": (True, 1), "/": (True, -1)}


def primitive_root(p):
    """The smallest generator of the multiplicative group mod a prime p: g whose powers g^0..g^(p-2)
    are every nonzero residue, i.e. g^((p-1)/q) != 1 for every prime factor q of p - 1."""
    if not is_prime(p):
        raise ValueError(f"{p} is not prime: only a prime has a primitive root for every nonzero residue")
    factors, n, q = set(), p - 1, 2
    while q * q <= n:
        while n % q == 0:
            factors.add(q)
            n //= q
        q += 1
    if n > 1:
        factors.add(n)
    return next(g for g in range(1, p) if all(pow(g, (p - 1) // q, p) != 1 for q in factors))


def discrete_log_order(p):
    """The residues 1..p-1 listed by exponent: [g^0, g^1, ..., g^(p-2)] mod p for g = primitive_root(p)."""
    g = primitive_root(p)
    return [pow(g, i, p) for i in range(p - 1)]


def group_order(op, p):
    """The residues in the order where op is addition or subtraction mod their count (see the top)."""
    return discrete_log_order(p) if CYCLIC_FORM[op][0] else list(range(p))


def embedding_spectrum(rows):
    """Power per frequency of embedding rows (n, C) listed in group order: power[k] for k = 0..n//2,
    the squared DFT magnitude over the n rows summed over the C dimensions, counted for both k and
    n - k, over n (so the powers sum to the rows' summed squares: Parseval). power[0] is the mean row's:
    an offset shared by every residue, which says nothing about which residue is which."""
    n = rows.size(0)
    power = torch.fft.rfft(rows.double(), dim=0).abs().pow(2).sum(dim=1)
    power[1:(n + 1) // 2] *= 2  # k and n - k; the Nyquist term (n even) has no twin
    return power / n


def key_frequencies(power, count=TOP_FREQUENCIES):
    """The count strongest nonconstant frequencies of embedding_spectrum's power, strongest first."""
    return [int(k) + 1 for k in torch.argsort(power[1:], descending=True, stable=True)[:count]]


def top_share(power, count=TOP_FREQUENCIES):
    """Share of the nonconstant power in the count strongest frequencies: 1 for a pure circuit on
    count frequencies, about count / (n // 2) for a random embedding."""
    tail = power[1:]
    return float(tail.sort(descending=True).values[:count].sum() / tail.sum().clamp(min=1e-300))


def residue_spectrum(embedding, op):
    """embedding_spectrum of a table (p, C) whose row r embeds the residue r, in op's group order."""
    return embedding_spectrum(embedding[group_order(op, embedding.size(0))])


def _group_pairs(a, b, op, p):
    """(kept (N,) bool, s) of pairs a, b (N,): s the answer's index in the group order, i + sign * j;
    for * and / the pairs with a = 0 (or b = 0) are left out, since 0 has no discrete logarithm."""
    by_log, sign = CYCLIC_FORM[op]
    n = p - 1 if by_log else p
    index = torch.full((p,), -1, dtype=torch.long)
    index[torch.tensor(group_order(op, p))] = torch.arange(n)
    i, j = index[a], index[b]
    kept = (i >= 0) & (j >= 0)
    return kept, (i[kept] + sign * j[kept]) % n


def fourier_losses(logits, a, b, op, key_freqs):
    """{full, restricted, excluded} loss of the answer logits (N, p), column r the residue r, of the
    training pairs a, b (N,), keeping or removing the key frequencies (Nanda et al., section 5.1).

    Nanda et al. project the MLP activations of their one-layer model over all p^2 inputs onto
    cos and sin of w(a + b) at the key frequencies w; the models here differ (two layers, a final
    LayerNorm), so the projection is written on the logits, over the pairs given. For each answer
    column the logits are averaged over the pairs with the same s (a + b, a - b, or i + j, i - j of
    the discrete logs): the projection onto functions of s. A DFT over s splits that function into
    its key-frequency part and the rest. Restricted logits: its constant plus its key-frequency
    part; excluded logits: the logits minus the key-frequency part. The softmax runs over the
    group's residues, p of them for + and -, p - 1 for * and / (on the pairs with a != 0), so
    uniform logits give the log of that count.
    """
    p = logits.size(1)
    kept, s = _group_pairs(a, b, op, p)
    order = group_order(op, p)
    n = len(order)
    logits = logits[kept][:, order].double()  # (N, n): columns in group order, so the answer is s
    counts = torch.bincount(s, minlength=n).double()
    by_s = torch.zeros(n, n, dtype=torch.float64).index_add_(0, s, logits)
    # a value of s that no pair has (rare: about 10 pairs per value at p = 97): the mean of all pairs
    by_s = torch.where(counts[:, None] > 0, by_s / counts.clamp(min=1)[:, None], logits.mean(dim=0))
    spectrum = torch.fft.rfft(by_s, dim=0)  # (n // 2 + 1, n): frequency of s, answer column
    keep = torch.zeros(n // 2 + 1, 1, dtype=torch.float64)
    keep[key_freqs] = 1.0
    key_part = torch.fft.irfft(spectrum * keep, n=n, dim=0)  # (n, n)
    constant = by_s.mean(dim=0)
    versions = {"full": logits, "restricted": key_part[s] + constant, "excluded": logits - key_part[s]}
    return {name: float(F.cross_entropy(x, s)) for name, x in versions.items()}


@dataclass
class Task:
    """What metrics.TASK_METRICS read besides the model: the run's data config, its tokenizer, the
    training split's batch (tensors on the model's device, as tokens.encode_examples makes them)
    and the context to run the model in (runtime.forward_context; None: fp32, default attention)."""

    data: object
    tokenizer: object
    train_batch: dict
    context: object = None

    def residue_token_ids(self):
        """Token id of each residue 0..p-1 (a tensor), or None where the measures do not apply."""
        if self.skip_reason() is not None:
            return None
        return torch.tensor([self.tokenizer.index[format_number(r, number_width(self.data))]
                             for r in range(self.data.p)])

    def skip_reason(self):
        """None if the progress measures apply to this run, else why not ('' for text data, where
        there is nothing to explain)."""
        d = self.data
        if d.kind != "modular":
            return ""
        if d.tokenizer != "number":
            return f"they need one token per residue (data.tokenizer=number), not data.tokenizer={d.tokenizer}"
        if d.op not in CYCLIC_FORM:
            return (f"'{d.op}' is not a cyclic group's addition or subtraction, in any order of its operands "
                    "that this repo knows, so its embeddings have no Fourier circuit to measure (they apply to + - * /)")
        if CYCLIC_FORM[d.op][0] and not is_prime(d.p):
            return f"the discrete-log order of '{d.op}' needs a prime p, and {d.p} is not prime"
        n = d.p - 1 if CYCLIC_FORM[d.op][0] else d.p
        if n // 2 <= TOP_FREQUENCIES:
            return f"'{d.op}' mod {d.p} has {n // 2} frequencies, no more than the {TOP_FREQUENCIES} that {SHARE_KEY} counts"
        missing = [r for r in range(d.p) if format_number(r, number_width(d)) not in self.tokenizer.index]
        return f"residue {missing[0]} has no token of its own" if missing else None

    def note(self):
        """The line train.py prints once where the measures are skipped for a reason, else ''."""
        reason = self.skip_reason()
        return f"note: the progress measures (fourier_*) are skipped: {reason}" if reason else ""


def _plain(model):
    """The module itself: torch.compile's wrapper would recompile for these other shapes."""
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def embedding_power(model, data, ids):
    """embedding_spectrum of the model's token embeddings of the residues (their token ids: ids)."""
    weight = _plain(model).tok_emb.weight
    return residue_spectrum(weight[ids.to(weight.device)].float().cpu(), data.op)


def spectrum_measures(model, task):
    """{fourier_top5_share, fourier_key_freqs} from the token embedding, or {} where they do not apply."""
    ids = task.residue_token_ids()
    if ids is None:
        return {}
    power = embedding_power(model, task.data, ids)
    return {SHARE_KEY: top_share(power), KEY_FREQS_KEY: key_frequencies(power)}


@torch.no_grad()
def answer_logits(model, task, ids):
    """(logits (N, p) over the residues at the answer position, a (N,), b (N,)) of the first
    LOSS_PAIRS training pairs, whose number-token rows read [EOS, a, op, b, =] -> [a, op, b, =, c]."""
    model = _plain(model)
    idx, targets = task.train_batch["idx"][:LOSS_PAIRS], task.train_batch["targets"][:LOSS_PAIRS]
    residue_of = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    residue_of[ids] = torch.arange(len(ids))
    a, b, c = (residue_of[column.cpu()] for column in (idx[:, 1], idx[:, 3], targets[:, 4]))
    if bool((a < 0).any() or (b < 0).any() or (c < 0).any()):
        raise ValueError("training rows are not number-token equations [EOS, a, op, b, =, c]")
    was_training = model.training
    model.eval()
    with task.context() if task.context else contextlib.nullcontext():
        logits, _ = model(idx, positions=torch.tensor([4], device=idx.device))  # (N, 1, V): after '='
    model.train(was_training)
    return logits[:, 0, ids.to(idx.device)].float().cpu(), a, b


def loss_measures(model, task):
    """{fourier_full_loss, fourier_restricted_loss, fourier_excluded_loss} on the training split,
    along the embedding's key frequencies; {} where they do not apply."""
    ids = task.residue_token_ids()
    if ids is None:
        return {}
    keys = key_frequencies(embedding_power(model, task.data, ids))
    logits, a, b = answer_logits(model, task, ids)
    losses = fourier_losses(logits, a, b, task.data.op, keys)
    return {f"fourier_{name}_loss": value for name, value in losses.items()}


def checkpoint_spectrum(model, tokenizer, data):
    """(power per frequency, how the residues are ordered) of a loaded model's token embedding;
    ValueError saying why where the measures do not apply."""
    task = Task(data, tokenizer, {})
    ids = task.residue_token_ids()
    if ids is None:
        raise ValueError(task.skip_reason() or "the model was not trained on modular arithmetic")
    order = "discrete-log order" if CYCLIC_FORM[data.op][0] else "natural order"
    return embedding_power(model, data, ids), order
