"""The contract between the SSL model and its losses.

The model builds one :class:`SSLForwardRecord` per forward pass and hands the same record to
every configured loss. A loss declares what it needs through :class:`LossNeeds` (a typed record,
not a list of strings) and returns a :class:`LossOutput`.

Weight semantics (the model -> trainer contract): ``LossOutput.loss`` is a per-frame *mean* over
``LossOutput.weight`` frames on this rank. The trainer rescales every rank's loss by
``weight * world_size / all_reduce_sum(weight)`` before backward, so after DDP's gradient
averaging the update equals the gradient of the true per-frame mean over all ranks' frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossNeeds:
    """What a loss requires from the model."""

    labels: bool = False  # frame-level pseudo-labels (so a token list is required)
    mask: bool = True  # masked student input (the Masking util must be active)
    teacher: bool = False  # EMA teacher run on the unmasked input


@dataclass
class SSLForwardRecord:
    """Everything a loss may look at. Shapes: B batch, T frames, D encoder dim."""

    hidden_states: list[torch.Tensor]  # student block outputs, each (B, T, D); [-1] = final output
    lengths: torch.Tensor  # (B,) valid frames per utterance
    padding_mask: torch.Tensor  # (B, T) True on padding frames
    mask: torch.Tensor | None = None  # (B, T) True on masked frames (never on padding)
    labels: torch.Tensor | None = None  # (B, T) long, -1 where there is no label (ignored)
    teacher_hidden_states: list[torch.Tensor] | None = None  # teacher block outputs (B, T, D)
    features: torch.Tensor | None = None  # (B, T, D_pre) unmasked pre-encoder output


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, per-frame mean over `weight` frames
    stats: dict[str, torch.Tensor]  # detached scalars for logging (not synced yet)
    weight: torch.Tensor  # scalar count of frames the loss averaged over


class AbsSSLLoss(torch.nn.Module, ABC):
    """Base class of every SSL objective. Subclasses set ``needs`` and implement ``forward``."""

    needs: LossNeeds = LossNeeds()

    @abstractmethod
    def forward(self, record: SSLForwardRecord) -> LossOutput:
        """Compute the objective from the shared record."""

    def layer_problems(self, num_layers: int) -> list[str]:
        """Options that need more encoder blocks than ``num_layers`` (checked when the model is
        built, so the preflight reports them before anything is written). Default: none."""
        return []

    def after_optimizer_step(self, step: int) -> None:
        """Called by the model once per optimizer step (after ``optimizer.step()``).

        ``step`` counts optimizer updates from 1. Default: nothing.
        """
