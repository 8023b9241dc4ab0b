"""The pieces of a training run that train.py loops over and bench.py times.

TrainState is everything a run carries from step to step, saved and restored as one state_dict;
train_step is the one optimisation step. The levers it pulls (optimizers, schedules, gradient
filters, token losses) are registries in levers.py.
"""

import math

import torch

from levers import TOKEN_LOSSES, lr_at, make_filters, make_optimizer
from runtime import rng_state, set_rng_state

# ----------------------------------------------------------------------------- evaluation grid


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
    token_loss = TOKEN_LOSSES[train_cfg.loss]
    with context():
        _, loss = model(batch["idx"], batch["targets"], batch["loss_mask"],
                        None if attention_mask is None else batch["attention_mask"], positions, token_loss=token_loss)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if train_cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), train_cfg.grad_clip)
    for f in state.filters.values():
        f.apply()
    state.optimizer.step()
    state.step += 1
    return loss
