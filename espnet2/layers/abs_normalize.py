"""Abstract feature normalisation: (B, T, D), (B,) -> (B, T, D), (B,)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class AbsNormalize(torch.nn.Module, ABC):
    @abstractmethod
    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalise features; padding stays padding."""
