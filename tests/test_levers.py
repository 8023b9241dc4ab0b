"""Issue 16's levers and the grokked-and-held metric: each pinned to what it does."""

import math

import pytest
import torch

from config import TrainConfig, load_config
from levers import (OPTIMIZERS, TOKEN_LOSSES, ChainedOptimizer, PerpendicularGradient, lr_at, make_optimizer,
                    parameter_groups, stablemax_log_probs, token_losses)
from model import GPT, GPTConfig
from runlog import grokking_summary


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 16, "d_ff": 32, "vocab_size": 11, "block_size": 6, **kw}))


def test_stablemax_probabilities_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])  # s = 3, 1, 1/2: probabilities 3/4.5, 1/4.5, 0.5/4.5
    probs = stablemax_log_probs(logits).exp()
    assert torch.allclose(probs, torch.tensor([[3 / 4.5, 1 / 4.5, 0.5 / 4.5]]))
    targets = torch.tensor([[0]])
    loss = token_losses(logits[:, None, :], targets, "stablemax")
    assert loss.shape == (1, 1) and loss.item() == pytest.approx(-math.log(3 / 4.5))
    softmax = -torch.log_softmax(logits, -1)[0, 0]
    assert token_losses(logits[:, None, :], targets).item() == pytest.approx(softmax.item())


def test_the_model_averages_the_token_loss_it_is_given_over_the_loss_mask():
    model = tiny()
    idx, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    loss_mask = torch.zeros(2, 6, dtype=torch.bool)
    loss_mask[0, 4] = loss_mask[1, 5] = True
    logits, default = model(idx, targets, loss_mask)
    for kind, token_loss in TOKEN_LOSSES.items():
        _, loss = model(idx, targets, loss_mask, token_loss=token_loss)
        assert loss.item() == pytest.approx(token_losses(logits, targets, kind)[loss_mask].mean().item(), rel=1e-6)
    _, softmax = model(idx, targets, loss_mask, token_loss=TOKEN_LOSSES["softmax"])
    assert torch.equal(default, softmax)  # the model's default is the softmax entry


def test_perpendicular_gradient_removes_the_part_along_the_weights():
    layer = torch.nn.Linear(3, 2, bias=False)
    layer.weight.data = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    layer.weight.grad = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 4.0]])
    PerpendicularGradient([layer.weight]).apply()
    # g . w = 2 + 3 = 5, w . w = 2: g - 2.5 w
    assert torch.allclose(layer.weight.grad, torch.tensor([[-0.5, 1.0, 0.0], [0.0, 0.5, 4.0]]))
    assert abs(float((layer.weight.grad * layer.weight.detach()).sum())) < 1e-6


def test_every_optimizer_covers_every_parameter_once():
    model = tiny()
    for decay in ("matrices", "all"):
        groups = parameter_groups(model, decay)
        names = [n for members in groups.values() for n, _ in members]
        assert sorted(names) == sorted(n for n, _ in model.named_parameters())
        assert (decay == "all") == (not groups["no_decay"])
    for name in OPTIMIZERS:
        opt = make_optimizer(model, TrainConfig(optimizer=name))
        params = [p for g in opt.param_groups for p in g["params"]]
        assert len(params) == len({id(p) for p in params}) == len(list(model.parameters())), name


def test_muon_takes_the_hidden_matrices_and_steps():
    model = tiny()
    opt = make_optimizer(model, TrainConfig(optimizer="muon"))
    assert isinstance(opt, ChainedOptimizer) and isinstance(opt.optimizers[0], torch.optim.Muon)
    hidden = {id(p) for g in opt.optimizers[0].param_groups for p in g["params"]}
    assert hidden == {id(p) for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    before = [p.detach().clone() for p in model.parameters()]
    _, loss = model(torch.randint(0, 11, (4, 6)), torch.randint(0, 11, (4, 6)))
    loss.backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    opt.load_state_dict(opt.state_dict())


def test_init_scale_scales_every_initial_weight():
    base, half = tiny(), tiny(init_scale=0.5)
    for (name, a), (_, b) in zip(base.named_parameters(), half.named_parameters()):
        if a.dim() == 2:
            assert b.std().item() == pytest.approx(0.5 * a.std().item(), rel=1e-5), name


def test_drop_schedule_lowers_the_lr_once_memorised():
    cfg = TrainConfig(lr=1e-3, schedule="drop", min_lr_frac=0.1, warmup_steps=10)
    assert lr_at(500, cfg, memorised_at=None) == 1e-3
    assert lr_at(500, cfg, memorised_at=400) == pytest.approx(1e-4)
    assert lr_at(5, cfg, memorised_at=None) == pytest.approx(6e-4)


def test_lever_keys_are_off_by_default():
    cfg = load_config("configs/div97_paper.yaml")
    t = cfg.train
    assert (t.optimizer, t.loss, t.perpendicular_grad, t.schedule, t.grad_clip, t.eps, t.decay) == (
        "adamw", "softmax", False, "constant", 0.0, 1e-8, "matrices")
    assert cfg.model.init_scale == 1.0


def log(values):
    return [{"step": 100 * i, "train_acc": 1.0, "val_acc": v} for i, v in enumerate(values)]


def test_grokked_and_held():
    held = grokking_summary(log([0.1, 0.995, 0.98, 1.0]), "val")
    assert held["grokked_at"] == 100 and held["grokked"] and held["lowest_val_after_99"] == 0.98
    relapse = grokking_summary(log([0.1, 0.995, 0.5, 0.99, 1.0]), "val")
    assert relapse["val_99"] == 100 and relapse["grokked_at"] == 300 and relapse["falls_below_90"] == 1
    just_at_the_end = grokking_summary(log([0.1, 0.995, 0.5, 0.99]), "val")
    assert just_at_the_end["grokked_at"] is None and just_at_the_end["val_99"] == 100
    ends_low = grokking_summary(log([0.1, 0.995, 0.999, 0.32]), "val")
    assert ends_low["val_99"] == 100 and ends_low["grokked_at"] is None and not ends_low["grokked"]
    subset = grokking_summary(log([0.1, 0.995, 1.0])[:1] + [{"step": 50, "val_acc": 1.0, "subset": 512}]
                              + log([0.1, 0.5, 1.0])[1:], "val")
    assert subset["val_99"] == 200  # records scored on a subset do not count
    # the delay: held-out 99% step over train 99% step; none when train accuracy starts at 99%
    assert held["train_99"] == 0 and held["delay_99"] is None
    later = grokking_summary([{"step": s, "train_acc": t, "val_acc": v} for s, t, v in
                              [(0, 0.0, 0.0), (100, 0.995, 0.01), (400, 1.0, 0.2), (900, 1.0, 0.999)]], "val")
    assert later["train_99"] == 100 and later["val_99"] == 900 and later["delay_99"] == 9.0
