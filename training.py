"""The pieces of a training run that train.py loops over and bench.py times.

Registries (a new lever is a new entry): OPTIMIZERS, SCHEDULES, GRADIENT_FILTERS. TrainState
is everything a run carries from step to step, saved and restored as one state_dict.
"""

import math

import torch

from runtime import rng_state, set_rng_state

# ----------------------------------------------------------------------------- schedules


def eval_steps(train_cfg):
    """The steps after which to evaluate: 0, then a geometric or a fixed grid, then the last."""
    last = train_cfg.max_steps
    if train_cfg.eval_schedule == "fixed":
        steps = set(range(0, last + 1, train_cfg.eval_interval))
    else:
        per = train_cfg.eval_per_decade
        steps = {round(10 ** (k / per)) for k in range(int(per * math.log10(last)) + 1)}
        steps.add(0)
    steps.add(last)
    return steps


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


# ----------------------------------------------------------------------------- state and step


class BatchOrder:
    """Shuffled epochs of a training set of n examples, drawn with a generator of their own.

    Incomplete last batches are dropped; a batch larger than n becomes the whole set.
    """

    def __init__(self, n, batch_size, seed, device):
        self.n, self.batch_size, self.device = n, min(batch_size, n), device
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = None, n

    def next(self):
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        index = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return index

    def state_dict(self):
        perm = None if self.perm is None else self.perm.cpu()
        return {"generator": self.generator.get_state(), "perm": perm, "pos": self.pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)
        self.pos = state["pos"]


class TrainState:
    """What a run carries from step to step: model, optimizer, gradient filters, batch order,
    step, the step at which train accuracy first reached train.drop_train_acc, and the RNG states."""

    def __init__(self, model, train_cfg, n_train, seed, device):
        self.model = model
        self.optimizer = make_optimizer(model, train_cfg)
        self.filters = make_filters(model, train_cfg)
        self.order = BatchOrder(n_train, train_cfg.batch_size, seed, device)
        self.step = 0
        self.memorised_at = None

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "filters": {name: f.state_dict() for name, f in self.filters.items()},
                "batch_order": self.order.state_dict(), "step": self.step,
                "memorised_at": self.memorised_at, "rng": rng_state()}

    def load_state_dict(self, state):
        """Restore every piece; a model or optimizer that does not fit raises ValueError."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(str(e).splitlines()[0][:160]) from e
        if set(state["filters"]) != set(self.filters):
            raise ValueError(f"the run used gradient filters {sorted(state['filters'])}, "
                             f"the config asks for {sorted(self.filters)}")
        for name, f in self.filters.items():
            f.load_state_dict(state["filters"][name])
        self.order.load_state_dict(state["batch_order"])
        self.step, self.memorised_at = state["step"], state["memorised_at"]
        set_rng_state(state["rng"])


def train_step(state, model, batch, inputs, train_cfg, context):
    """One optimisation step on a batch; returns the loss (a tensor, not synced to the host).

    model: what to call (the state's model, or a compiled / DDP wrapper of it); inputs: the
    (attention_mask or None, positions or None) pair of tokens.batch_model_inputs.
    """
    attention_mask, positions = inputs
    lr = lr_at(state.step, train_cfg, state.memorised_at)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    with context():
        if train_cfg.packed:
            _, loss = model(batch["idx"], batch["targets"], batch["loss_mask"], batch["attention_mask"],
                            loss_kind=train_cfg.loss, packed=True)
        else:
            _, loss = model(batch["idx"], batch["targets"], batch["loss_mask"],
                            None if attention_mask is None else batch["attention_mask"], positions,
                            loss_kind=train_cfg.loss)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if train_cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), train_cfg.grad_clip)
    for f in state.filters.values():
        f.apply()
    state.optimizer.step()
    state.step += 1
    return loss
