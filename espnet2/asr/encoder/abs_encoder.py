"""Abstract encoder with ESPnet's calling convention.

``forward(xs, ilens, prev_states=None, ctc=None, masks=None, return_all_hs=False)`` returns
``((out, hidden_states) if return_all_hs else out, olens, None)`` where ``out`` is (B, T, D) and
``hidden_states`` is a list with one (B, T, D) tensor per block (block outputs in order; the last
element is ``out`` itself, i.e. after the final LayerNorm when the encoder has one).
Encoders used for SSL must preserve the frame count (``input_layer`` None / "wav2vec" / "linear").
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class AbsEncoder(torch.nn.Module, ABC):
    @abstractmethod
    def output_size(self) -> int:
        """Output dimension D."""

    @abstractmethod
    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor | None = None,
        ctc: object | None = None,
        masks: torch.Tensor | None = None,
        return_all_hs: bool = False,
    ) -> tuple[object, torch.Tensor, None]:
        """See module docstring."""

    def num_layers(self) -> int:
        """Number of blocks (= len(hidden_states) with return_all_hs)."""
        return len(self.encoders)
