"""Exponential-moving-average teacher (data2vec / DinoSR).

The teacher is an fp32 deep copy of the student *encoder* (the frontend and pre-encoder are
shared). It is a registered submodule so its weights are in the model's ``state_dict`` (exact
resume), but every teacher parameter has ``requires_grad=False``: the optimizer must be built
from ``[p for p in model.parameters() if p.requires_grad]`` (DDP ignores such parameters for
gradient reduction). The teacher always stays in eval mode (no dropout / layer drop).

Update after every optimizer step ``t`` (counted from 1), ``ξ ← τ_t ξ + (1 − τ_t) θ`` with

    τ_t = ema_decay + (ema_end_decay − ema_decay) · t / ema_anneal_end_step   (t < end step)
    τ_t = ema_end_decay                                                      (t >= end step)
    τ_t = 1 (teacher frozen)                                  (t >= freeze_teacher_step)

Parameters whose name contains one of ``skip_keys`` (the convolutional positional embedding:
fairseq data2vec/DinoSR ``ema_layers_only``) are copied from the student instead of averaged;
buffers are copied too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)


class EMATeacher(torch.nn.Module):
    """EMA copy of a student encoder.

    Args (fairseq data2vec / DinoSR names, DinoSR Base values):
        student: the student encoder to copy (its current weights become the teacher's).
        ema_decay: initial decay τ_0 (``ema_decay`` 0.999).
        ema_end_decay: final decay (``ema_end_decay`` 0.9999).
        ema_anneal_end_step: updates over which τ moves linearly to the end value
            (``ema_anneal_end_step`` 30000); <= 0 means the end value from the start.
        freeze_teacher_step: from this update on τ = 1 (DinoSR ``freeze_teacher_step`` 200001;
            None = never).
        skip_keys: substrings of parameter names that are copied, not averaged
            (``ema_layers_only``: the conv positional embedding, ``pos_conv.`` in our encoders).
    """

    def __init__(
        self,
        student: torch.nn.Module,
        ema_decay: float = 0.999,
        ema_end_decay: float = 0.9999,
        ema_anneal_end_step: int = 30000,
        freeze_teacher_step: int | None = None,
        skip_keys: Sequence[str] = ("pos_conv.",),
    ):
        super().__init__()
        problems = []
        for name, value in (("ema_decay", ema_decay), ("ema_end_decay", ema_end_decay)):
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name}={value} (must be in [0, 1])")
        if problems:
            raise ValueError("EMATeacher: invalid options: " + "; ".join(problems))
        self.ema_decay = ema_decay
        self.ema_end_decay = ema_end_decay
        self.ema_anneal_end_step = ema_anneal_end_step
        self.freeze_teacher_step = freeze_teacher_step
        self.skip_keys = tuple(skip_keys)
        self.model = copy.deepcopy(student).float()
        self.model.requires_grad_(False)
        self.model.eval()
        # True once the teacher has been (re)synchronised with the student, see sync_().
        self.register_buffer("synced", torch.tensor(False))
        self._synced_cache = False
        self.last_decay = float(ema_decay)

    # -- schedule ---------------------------------------------------------------------------
    def decay_at(self, step: int) -> float:
        """τ used by the update after optimizer step ``step`` (pure function)."""
        if self.freeze_teacher_step is not None and step >= self.freeze_teacher_step:
            return 1.0
        if self.ema_anneal_end_step <= 0 or step >= self.ema_anneal_end_step:
            return float(self.ema_end_decay)
        frac = step / self.ema_anneal_end_step
        return float(self.ema_decay + (self.ema_end_decay - self.ema_decay) * frac)

    # -- state ------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> EMATeacher:
        super().train(mode)
        self.model.eval()  # the teacher never uses dropout / layer drop
        return self

    def _apply(self, fn, recurse=True):  # keep the teacher in fp32 whatever the model dtype
        super()._apply(fn, recurse)
        for p in self.model.parameters():
            if p.is_floating_point() and p.dtype != torch.float32:
                p.data = p.data.float()
        return self

    def is_synced(self) -> bool:
        """Whether the teacher has been initialised from the student (one host sync, cached)."""
        if not self._synced_cache:
            self._synced_cache = bool(self.synced)
        return self._synced_cache

    @torch.no_grad()
    def sync_(self, student: torch.nn.Module) -> None:
        """Copy the student's weights into the teacher (done once, before the first forward).

        Needed because the model may be re-initialised (``--init``) or loaded after this
        teacher was built; fairseq likewise creates the teacher at the first update.
        """
        self.model.load_state_dict(student.state_dict())
        self.synced.fill_(True)
        self._synced_cache = True

    # -- update -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, student: torch.nn.Module, num_updates: int) -> float:
        """EMA update after optimizer step ``num_updates`` (call exactly once per step).

        ``student`` is the unwrapped student encoder (not the DDP wrapper). Returns τ.
        """
        decay = self.decay_at(num_updates)
        self.last_decay = decay
        teacher_params = dict(self.model.named_parameters())
        averaged_t, averaged_s = [], []
        for name, p_s in student.named_parameters():
            if name not in teacher_params:
                raise KeyError(f"EMATeacher.step: student parameter {name!r} has no teacher "
                               "copy; the teacher must be built from this same encoder")
            p_t = teacher_params[name]
            if any(k in name for k in self.skip_keys):
                p_t.copy_(p_s.detach().float())
            elif decay < 1.0:
                averaged_t.append(p_t)
                averaged_s.append(p_s.detach().to(p_t.dtype))
        if averaged_t:  # ξ ← ξ + (1 − τ)(θ − ξ) == τ ξ + (1 − τ) θ
            torch._foreach_lerp_(averaged_t, averaged_s, 1.0 - decay)
        teacher_buffers = dict(self.model.named_buffers())
        for name, b_s in student.named_buffers():
            if name in teacher_buffers:
                teacher_buffers[name].copy_(b_s)
        return decay

    def forward(self, *args, **kwargs):
        """Run the teacher encoder without gradients (same call signature as the encoder)."""
        with torch.no_grad():
            return self.model(*args, **kwargs)
