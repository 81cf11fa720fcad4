"""Abstract pre-encoder: (B, T, D_in) -> (B, T, D_out), frame count preserved."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class AbsPreEncoder(torch.nn.Module, ABC):
    @abstractmethod
    def output_size(self) -> int:
        """Output dimension."""

    @abstractmethod
    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D_in), (B,) -> (B, T, D_out), (B,)."""
