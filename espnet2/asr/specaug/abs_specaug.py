"""Abstract SpecAugment: (B, T, D), (B,) -> (B, T, D), (B,). Active in training only."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class AbsSpecAug(torch.nn.Module, ABC):
    @abstractmethod
    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment features; frame count unchanged."""
