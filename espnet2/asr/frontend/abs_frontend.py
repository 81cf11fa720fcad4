"""Abstract frontend: waveform (B, N) -> features (B, T, D)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from espnet2.data.frames import FrameGeometry


class AbsFrontend(torch.nn.Module, ABC):
    @abstractmethod
    def output_size(self) -> int:
        """Feature dimension D."""

    @abstractmethod
    def frame_geometry(self) -> FrameGeometry:
        """How samples map to output frames (used by collate, labels and preflight)."""

    @abstractmethod
    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveform and (B,) sample counts -> (B, T, D) features and (B,) frame counts.

        Frame counts must equal ``self.frame_geometry().num_frames_tensor(input_lengths)``.
        """
