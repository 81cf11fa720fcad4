"""Learning-rate schedules stepped once per optimizer update (``scheduler.step()``).

``last_epoch`` of a torch scheduler counts completed updates here. Each class computes the
lr from that count with a closed formula, so ``state_dict()`` (saved in ``checkpoint.pth``)
is all a resume needs. ``base_lr`` below is the optimizer's ``lr`` (the peak lr).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


class _FormulaLR(LRScheduler):
    """lr of every param group = ``factor(completed_updates) * its base lr``."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]


class WarmupLR(_FormulaLR):
    """ESPnet ``warmuplr`` (Noam without the model-size term).

    lr(n) = base_lr * warmup^0.5 * min(n^-0.5, n * warmup^-1.5) for update n = 1, 2, ...
    (peak = base_lr at n = warmup, then n^-0.5 decay). ESPnet default ``warmup_steps=25000``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 25000,
                 last_epoch: int = -1):
        if warmup_steps < 1:
            raise ValueError(f"warmuplr: warmup_steps={warmup_steps} must be >= 1")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        n = step + 1  # the update about to be made (ESPnet's step_num)
        return self.warmup_steps**0.5 * min(n**-0.5, n * self.warmup_steps**-1.5)


class TriStageLR(_FormulaLR):
    """fairseq ``tri_stage`` (wav2vec 2.0 / HuBERT fine-tuning schedule).

    Warm up linearly from ``init_lr_scale * lr`` to ``lr`` over ``warmup_steps``, hold ``lr`` for
    ``hold_steps``, decay exponentially to ``final_lr_scale * lr`` over ``decay_steps``, then
    stay there. Steps come from ``phase_ratio * max_steps`` (fairseq ``max_update``) unless
    given. fairseq defaults: ``init_lr_scale=0.01``, ``final_lr_scale=0.01``.
    The lr of update n+1 is f(n) with n completed updates (fairseq ``step_update(num_updates)``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_steps: int | None = None,
                 phase_ratio: tuple[float, float, float] | None = (0.03, 0.47, 0.5),
                 warmup_steps: int | None = None, hold_steps: int | None = None,
                 decay_steps: int | None = None, init_lr_scale: float = 0.01,
                 final_lr_scale: float = 0.01, last_epoch: int = -1):
        if warmup_steps is None or hold_steps is None or decay_steps is None:
            if max_steps is None or phase_ratio is None:
                raise ValueError("tristagelr needs max_steps (fairseq max_update) with "
                                 "phase_ratio, or all of warmup_steps/hold_steps/decay_steps")
            if abs(sum(phase_ratio) - 1.0) > 1e-6:
                raise ValueError(f"tristagelr: phase_ratio {list(phase_ratio)} must sum to 1")
            warmup_steps, hold_steps, decay_steps = (int(max_steps * r) for r in phase_ratio)
        if not 0 < final_lr_scale <= 1 or not 0 <= init_lr_scale <= 1:
            raise ValueError(f"tristagelr: init_lr_scale={init_lr_scale} and final_lr_scale="
                             f"{final_lr_scale} must be in (0, 1]")
        self.warmup_steps, self.hold_steps, self.decay_steps = warmup_steps, hold_steps, decay_steps
        self.init_lr_scale, self.final_lr_scale = init_lr_scale, final_lr_scale
        self.decay_factor = -math.log(final_lr_scale) / max(1, decay_steps)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init_lr_scale + (1 - self.init_lr_scale) * step / self.warmup_steps
        step -= self.warmup_steps
        if step < self.hold_steps:
            return 1.0
        step -= self.hold_steps
        if step <= self.decay_steps:
            return math.exp(-self.decay_factor * step)
        return self.final_lr_scale


class WarmupCosineLR(LRScheduler):
    """Linear warmup to ``lr`` over ``warmup_steps``, then half a cosine down to ``min_lr``.

    For n completed updates: n < warmup: lr * (n + 1) / warmup (the first update is not lr 0);
    else lr_min + (lr - lr_min) * (1 + cos(pi * p)) / 2 with p = (n - warmup) / (total - warmup),
    clipped to 1. ``total_steps`` defaults to ``max_steps``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0,
                 total_steps: int | None = None, max_steps: int | None = None,
                 min_lr: float = 0.0, last_epoch: int = -1):
        total_steps = total_steps if total_steps is not None else max_steps
        if total_steps is None or total_steps <= warmup_steps:
            raise ValueError(f"warmupcosine: total_steps={total_steps} (or max_steps) must exceed "
                             f"warmup_steps={warmup_steps}")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        n = self.last_epoch
        if n < self.warmup_steps:
            return [base * (n + 1) / self.warmup_steps for base in self.base_lrs]
        p = min(1.0, (n - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        c = 0.5 * (1 + math.cos(math.pi * p))
        return [self.min_lr + (base - self.min_lr) * c for base in self.base_lrs]


SCHEDULERS = {
    "warmuplr": WarmupLR,
    "tristagelr": TriStageLR,
    "warmupcosine": WarmupCosineLR,
    "warmup_cosine": WarmupCosineLR,
}


def schedule_horizon(max_steps: int | None, max_epoch: int, batches_per_epoch: int,
                     accum_grad: int = 1) -> int:
    """Optimizer updates a run makes: ``max_epoch * ceil(batches_per_epoch / accum_grad)``,
    capped by ``max_steps`` when set (training stops at whichever comes first).

    This is the horizon of the schedules that need one (tristagelr, warmupcosine) when the
    run is given in epochs (ESPnet's usual ``max_epoch``) rather than in updates.
    """
    per_epoch = -(-int(batches_per_epoch) // max(1, int(accum_grad)))
    by_epochs = int(max_epoch) * per_epoch
    return by_epochs if max_steps is None else min(int(max_steps), by_epochs)


def build_scheduler(name: str | None, optimizer: torch.optim.Optimizer,
                    conf: dict | None = None, max_steps: int | None = None) -> LRScheduler | None:
    """Scheduler ``name`` (warmuplr, tristagelr, warmupcosine, none) on ``optimizer``.

    ``max_steps`` (the trainer's) fills the schedule horizon when ``conf`` does not set one.
    """
    if name is None or name.lower() == "none":
        return None
    key = name.lower()
    if key not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {name!r}; choose one of "
                         f"{sorted(SCHEDULERS)} or none")
    conf = dict(conf or {})
    if key in ("tristagelr", "warmupcosine", "warmup_cosine") and max_steps is not None:
        conf.setdefault("max_steps", max_steps)
    try:
        return SCHEDULERS[key](optimizer, **conf)
    except TypeError as e:
        raise ValueError(f"scheduler_conf for {name!r} is invalid: {e}") from None


def check_schedule(name: str | None, conf: dict | None, horizon: int,
                   how: str) -> tuple[str | None, str | None]:
    """``(error, warning)`` for scheduler ``name`` on a run of ``horizon`` updates (``how``
    says where the number comes from), checked on a dummy optimizer before any model exists.

    error: the schedule cannot be built for this run (warmupcosine with warmup_steps >= the
    horizon, bad tristagelr phases). warning: the lr never reaches its peak (warmup_steps >
    horizon, e.g. ESPnet's 25000 on a small corpus): legal, but rarely what was meant.
    """
    if name is None or name.lower() not in SCHEDULERS:
        return None, None  # none, or unknown (reported by the option checks)
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    try:
        scheduler = build_scheduler(name, dummy, conf, max_steps=horizon)
    except ValueError as e:
        return (f"scheduler {name}: {e}; this run makes {horizon} updates ({how}): lower "
                "warmup_steps or raise max_epoch/max_steps"), None
    warmup = int(getattr(scheduler, "warmup_steps", 0) or 0)
    if warmup > horizon:
        return None, (f"scheduler {name}: warmup_steps={warmup} but this run makes only "
                      f"{horizon} updates ({how}): the lr never reaches its configured peak "
                      f"(it ends at about {horizon / warmup:.0%} of it); lower warmup_steps")
    return None, None
