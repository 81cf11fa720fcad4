"""Schedulers vs their formulas, per optimizer update; optimizer factory."""

from __future__ import annotations

import math

import pytest
import torch

from espnet2.train.optim import build_optimizer
from espnet2.train.schedulers import build_scheduler

LR = 2e-3


def lrs(name, conf, n, max_steps=None):
    """lr used by updates 1..n."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sch = build_scheduler(name, opt, conf, max_steps=max_steps)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out, sch, opt


def test_warmuplr_matches_espnet_formula():
    got, _, _ = lrs("warmuplr", {"warmup_steps": 10}, 40)
    for n in (1, 5, 10, 11, 40):
        want = LR * 10**0.5 * min(n**-0.5, n * 10**-1.5)
        assert got[n - 1] == pytest.approx(want, rel=1e-12)
    assert max(got) == pytest.approx(LR) and got.index(max(got)) == 9


def test_tristage_phases_from_ratio():
    got, _, _ = lrs("tristagelr", {}, 120, max_steps=100)  # warmup 3, hold 47, decay 50
    assert got[0] == pytest.approx(0.01 * LR)
    assert got[1] == pytest.approx(LR * (0.01 + 0.99 * 1 / 3))
    assert got[3] == pytest.approx(LR) and got[49] == pytest.approx(LR)
    decay = -math.log(0.01) / 50
    assert got[50 + 20] == pytest.approx(LR * math.exp(-decay * 20))
    assert got[100] == pytest.approx(0.01 * LR) and got[119] == pytest.approx(0.01 * LR)


def test_tristage_explicit_steps_and_errors():
    got, _, _ = lrs("tristagelr", {"warmup_steps": 2, "hold_steps": 1, "decay_steps": 2,
                                   "init_lr_scale": 0.5, "final_lr_scale": 0.25}, 7)
    assert got == pytest.approx([0.5 * LR, 0.75 * LR, LR, LR, 0.5 * LR, 0.25 * LR, 0.25 * LR])
    with pytest.raises(ValueError, match="max_steps"):
        lrs("tristagelr", {}, 1)


def test_warmup_cosine():
    got, _, _ = lrs("warmup_cosine", {"warmup_steps": 4, "min_lr": 1e-5}, 30, max_steps=24)
    assert got[:4] == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, LR])
    assert got[14] == pytest.approx(1e-5 + (LR - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert got[24] == pytest.approx(1e-5) and got[29] == pytest.approx(1e-5)


def test_scheduler_state_resumes_the_curve():
    """As in the trainer: optimizer state (holds the current lr) + scheduler state."""
    full, _, _ = lrs("warmuplr", {"warmup_steps": 10}, 30)
    _, sch_half, opt_half = lrs("warmuplr", {"warmup_steps": 10}, 12)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sch = build_scheduler("warmuplr", opt, {"warmup_steps": 10})
    opt.load_state_dict(opt_half.state_dict())
    sch.load_state_dict(sch_half.state_dict())
    rest = []
    for _ in range(18):
        rest.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert rest == pytest.approx(full[12:], rel=1e-12)


def test_none_and_unknown():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    assert build_scheduler("none", opt) is None
    with pytest.raises(ValueError, match="Unknown scheduler 'noam'"):
        build_scheduler("noam", opt)
    with pytest.raises(ValueError, match="scheduler_conf"):
        build_scheduler("warmuplr", opt, {"warmup": 3})


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_build_optimizer_drops_frozen_params(name):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(name, model.parameters(), {"lr": 0.1})
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 3 and all(p.requires_grad for p in params)
    with pytest.raises(ValueError, match="Unknown optimizer 'adadelta2'"):
        build_optimizer("adadelta2", model.parameters())


def test_schedule_horizon_from_epochs_and_accumulation():
    from espnet2.train.schedulers import schedule_horizon

    assert schedule_horizon(None, max_epoch=3, batches_per_epoch=10) == 30
    assert schedule_horizon(None, max_epoch=3, batches_per_epoch=10, accum_grad=4) == 9  # 3 a epoch
    assert schedule_horizon(12, max_epoch=3, batches_per_epoch=10) == 12  # max_steps first
    assert schedule_horizon(100, max_epoch=3, batches_per_epoch=10) == 30  # epochs first
