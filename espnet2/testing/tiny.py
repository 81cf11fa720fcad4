"""Tiny stand-in modules and batches shared by the tests (CPU, width 16, 1-2 blocks).

They implement the real contracts (AbsFrontend with a FrameGeometry, AbsEncoder with ESPnet's
return convention) so model-level tests do not depend on the full-size building blocks.
"""

from __future__ import annotations

import torch

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.data.frames import FrameGeometry


def lengths_to_padding_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """(B,) lengths -> (B, total) bool, True on padding."""
    return torch.arange(total, device=lengths.device)[None, :] >= lengths[:, None]


class TinyFrontend(AbsFrontend):
    """One strided Conv1d + GELU: (B, N) -> (B, T, D), geometry (kernel, stride, 0)."""

    def __init__(self, output_size: int = 16, kernel: int = 16, stride: int = 8):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, output_size, kernel, stride)
        self._geometry = FrameGeometry(kernel, stride, 0)

    def output_size(self) -> int:
        return self.conv.out_channels

    def frame_geometry(self) -> FrameGeometry:
        return self._geometry

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor):
        x = torch.nn.functional.gelu(self.conv(input[:, None, :])).transpose(1, 2)  # (B, T, D)
        return x, self._geometry.num_frames_tensor(input_lengths)


class TinyPreEncoder(AbsPreEncoder):
    """A Linear projection (stand-in for LinearProjection)."""

    def __init__(self, input_size: int = 16, output_size: int = 16):
        super().__init__()
        self.linear = torch.nn.Linear(input_size, output_size)

    def output_size(self) -> int:
        return self.linear.out_features

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor):
        return self.linear(input), input_lengths


class TinyBlock(torch.nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.linear = torch.nn.Linear(size, size)
        self.norm = torch.nn.LayerNorm(size)
        self.dropout = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(torch.tanh(self.linear(x))))


class TinyEncoder(AbsEncoder):
    """Depthwise conv "positional embedding" (``pos_conv``) + residual Linear blocks.

    Padded frames are zeroed before the conv so valid outputs do not depend on padding.
    """

    def __init__(self, input_size: int = 16, output_size: int = 16, num_blocks: int = 2):
        super().__init__()
        self.proj = torch.nn.Linear(input_size, output_size)
        self.pos_conv = torch.nn.Conv1d(output_size, output_size, 3, padding=1,
                                        groups=output_size)
        self.encoders = torch.nn.ModuleList(TinyBlock(output_size) for _ in range(num_blocks))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    def forward(self, xs_pad, ilens, prev_states=None, ctc=None, masks=None,
                return_all_hs=False):
        self.calls += 1
        pad = lengths_to_padding_mask(ilens, xs_pad.size(1))
        x = self.proj(xs_pad).masked_fill(pad[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        hidden_states = []
        for block in self.encoders:
            x = block(x)
            hidden_states.append(x)
        if return_all_hs:
            return (x, hidden_states), ilens, None
        return x, ilens, None


def tiny_batch(
    lengths: tuple[int, ...] = (800, 560), num_classes: int = 8, stride: int = 8,
    kernel: int = 16,
) -> dict[str, torch.Tensor]:
    """Random speech (B, N) with the given sample counts and frame-aligned labels (-1 pad)."""
    B, N = len(lengths), max(lengths)
    speech = torch.zeros(B, N)
    geometry = FrameGeometry(kernel, stride, 0)
    frames = [geometry.num_frames(n) for n in lengths]
    text = torch.full((B, max(frames)), -1, dtype=torch.long)
    for b, n in enumerate(lengths):
        speech[b, :n] = torch.randn(n)
        text[b, : frames[b]] = torch.randint(0, num_classes, (frames[b],))
    return {
        "speech": speech,
        "speech_lengths": torch.tensor(lengths),
        "text": text,
        "text_lengths": torch.tensor(frames),
    }


def tiny_model(
    losses: tuple[str, ...] = ("hubert",),
    dim: int = 16,
    num_blocks: int = 2,
    num_classes: int = 8,
    mask_conf: dict | None = None,
    ema_conf: dict | None = None,
):
    """A tiny ESPnetSSLModel with the stand-in modules and the requested losses."""
    from espnet2.ssl.espnet_model import ESPnetSSLModel
    from espnet2.ssl.loss.dinosr import DinoSRLoss
    from espnet2.ssl.loss.hubert import HuBERTLoss
    from espnet2.ssl.utils.ema import EMATeacher
    from espnet2.ssl.utils.mask import Masking

    encoder = TinyEncoder(dim, dim, num_blocks)
    built = []
    for name in losses:
        if name == "hubert":
            built.append((name, HuBERTLoss(dim, num_classes, final_dim=8), 1.0))
        elif name == "dinosr":
            built.append((name, DinoSRLoss(dim, num_codebooks=num_blocks, codebook_size=4),
                          1.0))
        else:
            raise ValueError(f"tiny_model: unknown loss {name!r}")
    mask_conf = {"mask_length": 4, **(mask_conf or {})}
    ema = None
    if "dinosr" in losses:
        ema = EMATeacher(encoder, **{"ema_anneal_end_step": 10, **(ema_conf or {})})
    return ESPnetSSLModel(
        frontend=TinyFrontend(dim),
        specaug=None,
        normalize=None,
        preencoder=TinyPreEncoder(dim, dim),
        encoder=encoder,
        losses=built,
        masker=Masking(dim, **mask_conf),
        ema=ema,
    )
