"""Convolutional gating MLP (cgMLP), the local branch of Branchformer / E-Branchformer.

Sakuma et al., 2021 ("MLP-based architecture with variable length input for ASR"); Peng et al.,
ICML 2022 (Branchformer); Kim et al., SLT 2022 (E-Branchformer). Parameter names match ESPnet's
``espnet2/asr/layers/cgmlp.py`` so its checkpoints load.

    x (B, T, D) -> Linear D->U, GELU -> split [r | g] (U/2 each)
      g -> LayerNorm -> [zero padded frames] -> depthwise conv (kernel K) -> [Linear] -> act
      -> r * g -> dropout -> Linear U/2 -> D
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_GATE_ACTIVATIONS = {
    "identity": torch.nn.Identity,
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
    "swish": torch.nn.SiLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
}


class ConvolutionalSpatialGatingUnit(torch.nn.Module):
    """CSGU: (B, T, U) -> (B, T, U/2).

    Args:
        size: input channels U (ESPnet ``cgmlp_linear_units``; E-Branchformer Base: 3072).
        kernel_size: depthwise kernel K, odd (ESPnet ``cgmlp_conv_kernel``, 31).
        dropout_rate: dropout on the gated output.
        use_linear_after_conv: Linear U/2 -> U/2 after the convolution (ESPnet, False).
        gate_activation: activation of the gate (ESPnet ``gate_activation``, "identity").
    """

    def __init__(
        self,
        size: int,
        kernel_size: int,
        dropout_rate: float,
        use_linear_after_conv: bool,
        gate_activation: str,
    ):
        super().__init__()
        if size % 2 != 0 or kernel_size % 2 != 1:
            raise ValueError(
                f"cgmlp.py: cgmlp_linear_units={size} must be even and cgmlp_conv_kernel="
                f"{kernel_size} odd (frame count is kept); e.g. 2048 and 31"
            )
        if gate_activation not in _GATE_ACTIVATIONS:
            raise ValueError(
                f"cgmlp.py: unknown gate_activation {gate_activation!r}; "
                f"choose one of {sorted(_GATE_ACTIVATIONS)}"
            )
        n_channels = size // 2
        self.norm = torch.nn.LayerNorm(n_channels, eps=1e-12)  # ESPnet's LayerNorm epsilon
        self.conv = torch.nn.Conv1d(
            n_channels, n_channels, kernel_size, 1, (kernel_size - 1) // 2, groups=n_channels
        )
        self.linear = torch.nn.Linear(n_channels, n_channels) if use_linear_after_conv else None
        self.act = _GATE_ACTIVATIONS[gate_activation]()
        self.dropout = torch.nn.Dropout(dropout_rate)

    def espnet_initialization_fn(self) -> None:
        """ESPnet's near-identity gate init (weights ~N(0, 1e-6), biases 1); ESPnet runs it only
        from its ``--init`` routine, so it is not called by the constructor."""
        torch.nn.init.normal_(self.conv.weight, std=1e-6)
        torch.nn.init.ones_(self.conv.bias)
        if self.linear is not None:
            torch.nn.init.normal_(self.linear.weight, std=1e-6)
            torch.nn.init.ones_(self.linear.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, U), mask (B, 1, T) bool True on valid frames -> (B, T, U/2)."""
        x_r, x_g = x.chunk(2, dim=-1)
        x_g = self.norm(x_g).transpose(1, 2)  # (B, U/2, T)
        if mask is not None:
            x_g = x_g.masked_fill(~mask, 0.0)
        x_g = self.conv(x_g).transpose(1, 2)  # (B, T, U/2)
        if self.linear is not None:
            x_g = self.linear(x_g)
        return self.dropout(x_r * self.act(x_g))


class ConvolutionalGatingMLP(torch.nn.Module):
    """cgMLP: (B, T, D) -> (B, T, D).

    Args:
        size: model dimension D.
        linear_units: hidden size U (ESPnet ``cgmlp_linear_units``, 2048; Base 3072).
        kernel_size: depthwise kernel (ESPnet ``cgmlp_conv_kernel``, 31).
        dropout_rate: dropout inside the gating unit.
        use_linear_after_conv, gate_activation: see :class:`ConvolutionalSpatialGatingUnit`.
    """

    def __init__(
        self,
        size: int,
        linear_units: int,
        kernel_size: int,
        dropout_rate: float,
        use_linear_after_conv: bool = False,
        gate_activation: str = "identity",
    ):
        super().__init__()
        self.channel_proj1 = torch.nn.Sequential(
            torch.nn.Linear(size, linear_units), torch.nn.GELU()
        )
        self.csgu = ConvolutionalSpatialGatingUnit(
            linear_units, kernel_size, dropout_rate, use_linear_after_conv, gate_activation
        )
        self.channel_proj2 = torch.nn.Linear(linear_units // 2, size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) bool True on valid frames (None = all) -> (B, T, D)."""
        return self.channel_proj2(self.csgu(self.channel_proj1(x), mask))
