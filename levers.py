"""The training levers, each kind in one registry: a new lever is a new entry.

SCHEDULES (learning rate after warmup), OPTIMIZERS (built by make_optimizer from parameter groups),
GRADIENT_FILTERS (applied between backward and the optimizer step) and TOKEN_LOSSES (the loss at
each position). config.py validates its choices against these names; training.py uses them.
"""

import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- schedules


def _cosine(step, cfg, memorised_at):
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


# After warmup: step, train config, step at which train accuracy first reached 100% (or None) -> lr.
SCHEDULES = {
    "constant": lambda step, cfg, memorised_at: cfg.lr,
    "cosine": _cosine,  # down to min_lr_frac * lr at max_steps
    # lr * min_lr_frac from the first evaluation with train accuracy >= drop_train_acc (100% by
    # default): memorised, now slow down
    "drop": lambda step, cfg, memorised_at: cfg.lr if memorised_at is None else cfg.lr * cfg.min_lr_frac,
}


def lr_at(step, cfg, memorised_at=None):
    """Linear warmup over warmup_steps updates, then the schedule."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return SCHEDULES[cfg.schedule](step, cfg, memorised_at)


# ----------------------------------------------------------------------------- optimizers


def parameter_groups(model, decay):
    """{'decay': [...], 'no_decay': [...]} of (name, parameter); every parameter lands in one.

    decay 'matrices': 2-D weights decay, biases and norm gains do not (nanoGPT's split);
    'all': every parameter decays, as torch's AdamW does by default (Power et al. 2022).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = {"decay": [], "no_decay": []}
    for name, p in named:
        groups["decay" if decay == "all" or p.dim() >= 2 else "no_decay"].append((name, p))
    assert sum(map(len, groups.values())) == len(named), "a parameter is in no optimizer group"
    return groups


def _torch_groups(groups, cfg):
    weight_decay = {"decay": cfg.weight_decay, "no_decay": 0.0}
    return [{"params": [p for _, p in members], "weight_decay": weight_decay[kind]}
            for kind, members in groups.items() if members]


class ChainedOptimizer:
    """Several optimizers stepped as one (Muon for hidden matrices, AdamW for the rest)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none=True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self):
        for o in self.optimizers:
            o.step()

    def state_dict(self):
        return {"chained": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state):
        for o, s in zip(self.optimizers, state["chained"], strict=True):
            o.load_state_dict(s)


def _muon(groups, cfg):
    """Muon (torch.optim.Muon) on the blocks' 2-D weights; AdamW on embeddings, head, norms, biases.

    adjust_lr_fn 'match_rms_adamw' scales Muon's update to AdamW's size, so lr and weight decay
    mean the same for both (Moonshot AI 2025, "Muon is Scalable for LLM Training").
    """
    hidden = [p for n, p in groups["decay"] if n.startswith("blocks.") and p.dim() == 2]
    taken = {id(p) for p in hidden}
    rest = {kind: [(n, p) for n, p in members if id(p) not in taken] for kind, members in groups.items()}
    muon = torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.betas[0],
                            adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(_torch_groups(rest, cfg), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    return ChainedOptimizer(muon, adamw)


OPTIMIZERS = {
    "adamw": lambda groups, cfg: torch.optim.AdamW(_torch_groups(groups, cfg), lr=cfg.lr,
                                                   betas=tuple(cfg.betas), eps=cfg.eps),
    # Adam adds weight_decay * w to the gradient (L2), unlike AdamW's decoupled decay.
    "adam": lambda groups, cfg: torch.optim.Adam(_torch_groups(groups, cfg), lr=cfg.lr,
                                                 betas=tuple(cfg.betas), eps=cfg.eps),
    "sgd": lambda groups, cfg: torch.optim.SGD(_torch_groups(groups, cfg), lr=cfg.lr, momentum=cfg.betas[0]),
    "muon": _muon,
}


def make_optimizer(model, cfg):
    return OPTIMIZERS[cfg.optimizer](parameter_groups(model, cfg.decay), cfg)


# ----------------------------------------------------------------------------- gradient filters


class Grokfast:
    """Grokfast-EMA (Lee et al. 2024, Algorithm 2): g <- g + lambda * EMA_alpha(g)."""

    def __init__(self, params, alpha, lamb):
        self.params, self.alpha, self.lamb = params, alpha, lamb
        self.ema = None

    @torch.no_grad()
    def apply(self):
        grads = [p.grad for p in self.params]
        if self.ema is None:  # the paper starts the average at the first gradient
            self.ema = [g.detach().clone() for g in grads]
        else:
            torch._foreach_lerp_(self.ema, grads, 1 - self.alpha)
        torch._foreach_add_(grads, self.ema, alpha=self.lamb)

    def state_dict(self):
        return {"ema": self.ema}

    def load_state_dict(self, state):
        self.ema = state["ema"]


class PerpendicularGradient:
    """The gradient of each weight tensor without its component along that tensor:
    g <- g - (g . w / w . w) w. Prieto et al. 2025 ("Grokking at the Edge of Numerical
    Stability", arXiv 2501.04697, section 5): stops the updates that only scale the weights up
    (naive loss minimisation), which they find delays grokking. Stateless."""

    def __init__(self, params):
        self.params = params

    @torch.no_grad()
    def apply(self):
        for p in self.params:
            norm2 = p.pow(2).sum()
            if norm2 > 0:
                p.grad.sub_(p * ((p.grad * p).sum() / norm2))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


# name -> (is it on for this train config, build it from the trainable parameters and the config),
# applied in this order after gradient clipping.
GRADIENT_FILTERS = {
    "perpendicular": (lambda cfg: cfg.perpendicular_grad, lambda params, cfg: PerpendicularGradient(params)),
    "grokfast": (lambda cfg: cfg.grokfast_lambda > 0,
                 lambda params, cfg: Grokfast(params, cfg.grokfast_alpha, cfg.grokfast_lambda)),
}


def make_filters(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    return {name: build(params, cfg) for name, (on, build) in GRADIENT_FILTERS.items() if on(cfg)}


# ----------------------------------------------------------------------------- token losses


def stablemax_log_probs(logits):
    """log StableMax (Prieto et al. 2025, arXiv 2501.04697, section 4): s(x) = x + 1 for x >= 0,
    1 / (1 - x) below; probabilities s(x_i) / sum_j s(x_j). It grows linearly rather than
    exponentially, so the loss cannot be driven to zero by scaling the logits up."""
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits.clamp(max=0)))
    return s.log() - s.sum(dim=-1, keepdim=True).log()


# Per-token losses: logits (N, V), targets (N,) -> (N,). train_step hands the chosen one to the
# model's forward (token_loss=); the model's own default is the softmax one.
TOKEN_LOSSES = {
    "softmax": lambda logits, targets: F.cross_entropy(logits, targets, reduction="none"),
    "stablemax": lambda logits, targets: -stablemax_log_probs(logits).gather(1, targets[:, None])[:, 0],
}


def token_losses(logits, targets, kind="softmax", dtype=torch.float32):
    """logits (B, T, V), targets (B, T) -> the loss at every position (B, T), computed in dtype.

    Evaluation uses float64, since near zero loss fp32's rounding over a large vocabulary is not
    small (GPT-2's 50,257 tokens at loss 1e-3: fp32 is off by over 20%).
    """
    per_token = TOKEN_LOSSES[kind](logits.to(dtype).reshape(-1, logits.size(-1)), targets.reshape(-1))
    return per_token.view(targets.shape)
