"""Models, synthetic batches and the bare training step shared by the benchmarks.

The "tiny HuBERT" of the issue "Speed and memory" (the configuration ESPnet was measured on):
7-layer 256-channel wav2vec 2.0 CNN (kernels/strides of Base, GroupNorm in the first layer,
no conv bias), Linear 256->256 pre-encoder, 2-block 256-dim post-LN Transformer (4 heads,
FFN 1024, conv positional embedding), HuBERT masked-prediction loss over 100 classes,
batches of 8 utterances of 1.2 s of 16 kHz audio. ``smoke=True`` shrinks every dimension.

The "naive" variant (bench only, never used by the toolkit) stands for ESPnet-style modules:
attention computed explicitly (``softmax(QK^T / sqrt(d)) V`` with a float mask, always
masked, as ESPnet's ``MultiHeadedAttention``) instead of PyTorch SDPA, and the first CNN
layer's GroupNorm over the whole padded tensor in fp32 (``F.group_norm``) instead of the
fused masked GroupNorm. Together with torch's default thread count this is the
"out-of-the-box" baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.layers.attention import MultiHeadedAttention
from espnet2.layers.masked_norm import MaskedGroupNorm
from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.ssl.loss.hubert import HuBERTLoss
from espnet2.ssl.utils.mask import Masking

FS = 16000
TINY = {"channels": 256, "layers": 7, "dim": 256, "heads": 4, "ffn": 1024, "blocks": 2,
        "classes": 100, "final_dim": 128, "batch": 8, "seconds": 1.2, "mask_length": 10}
SMOKE = {"channels": 16, "layers": 3, "dim": 16, "heads": 2, "ffn": 32, "blocks": 1,
         "classes": 8, "final_dim": 8, "batch": 2, "seconds": 0.1, "mask_length": 2}


def config(smoke: bool) -> dict:
    return dict(SMOKE if smoke else TINY)


def cnn_shapes(channels: int, layers: int) -> list[tuple[int, int, int]]:
    """wav2vec 2.0 layout: (C, 10, 5), then (C, 3, 2) x 4, then (C, 2, 2) x 2 (first ``layers``)."""
    shapes = [(channels, 10, 5)] + [(channels, 3, 2)] * 4 + [(channels, 2, 2)] * 2
    return shapes[:layers]


def build_model(cfg: dict, checkpoint_layers: int = 0, encoder_checkpointing: bool = False,
                naive: bool = False) -> ESPnetSSLModel:
    """The tiny HuBERT of ``cfg`` (see module docstring); ``naive`` swaps in ESPnet-style pieces."""
    encoder = TransformerEncoder(
        cfg["dim"], cfg["dim"], attention_heads=cfg["heads"], linear_units=cfg["ffn"],
        num_blocks=cfg["blocks"], dropout_rate=0.1, attention_dropout_rate=0.1,
        input_layer="wav2vec", normalize_before=False, pos_enc_layer_type="conv",
        activation_checkpointing=encoder_checkpointing)
    model = ESPnetSSLModel(
        frontend=CNNFrontend(shapes=cnn_shapes(cfg["channels"], cfg["layers"]),
                             checkpoint_layers=checkpoint_layers),
        specaug=None, normalize=None,
        preencoder=LinearProjection(cfg["channels"], cfg["dim"]),
        encoder=encoder,
        losses=[("hubert", HuBERTLoss(cfg["dim"], cfg["classes"], final_dim=cfg["final_dim"]),
                 1.0)],
        masker=Masking(cfg["dim"], mask_length=cfg["mask_length"]),
    )
    if naive:
        make_naive(model)
    return model


class NaiveAttention(MultiHeadedAttention):
    """ESPnet's attention maths written out: scores, float-masked softmax, dropout, matmul."""

    def forward(self, query, key, value, mask):  # noqa: D102
        q = self._heads(query, self.linear_q)
        k = self._heads(key, self.linear_k)
        v = self._heads(value, self.linear_v)
        if mask is None:  # ESPnet always builds and applies the mask, padded or not
            mask = torch.ones(key.size(0), 1, key.size(1), dtype=torch.bool, device=key.device)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)  # (B, H, T1, T2)
        pad = mask.unsqueeze(1).eq(0)  # (B, 1, *, T2)
        scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1).masked_fill(pad, 0.0)
        attn = F.dropout(attn, self.dropout_rate, self.training)
        context = torch.matmul(attn, v)  # (B, H, T1, d_k)
        b, _, t1, _ = context.shape
        return self.linear_out(context.transpose(1, 2).reshape(b, t1, self.h * self.d_k))


class PaddedGroupNorm(MaskedGroupNorm):
    """Plain fp32 GroupNorm over the whole (padded) time axis, as ESPnet's CNN frontend."""

    def forward(self, x, lengths=None):  # noqa: D102
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias,
                            self.eps).to(x.dtype)


def make_naive(model: ESPnetSSLModel) -> None:
    """Swap the attention and first-layer GroupNorm classes in place (same parameters)."""
    for module in model.modules():
        if type(module) is MultiHeadedAttention:
            module.__class__ = NaiveAttention
        elif type(module) is MaskedGroupNorm:
            module.__class__ = PaddedGroupNorm


def make_batches(model: ESPnetSSLModel, cfg: dict, count: int, seed: int = 0,
                 pad: bool = False, batch_size: int | None = None) -> list[dict]:
    """``count`` synthetic batches: (B, N) Gaussian "audio" and frame-aligned random labels.

    ``pad=False``: every utterance ``cfg["seconds"]`` long (the SSL collate crops to the
    shortest utterance). ``pad=True``: lengths uniform in [0.75, 1.25] x that, padded.
    """
    g = torch.Generator().manual_seed(seed)
    geometry = model.frontend.frame_geometry()
    bsz = batch_size or cfg["batch"]
    n = int(cfg["seconds"] * FS)
    batches = []
    for _ in range(count):
        if pad:
            lengths = torch.randint(int(0.75 * n), int(1.25 * n) + 1, (bsz,), generator=g)
            lengths[0] = int(1.25 * n)
        else:
            lengths = torch.full((bsz,), n)
        speech = torch.randn(bsz, int(lengths.max()), generator=g)
        speech *= (torch.arange(speech.size(1))[None] < lengths[:, None])
        frames = torch.tensor([geometry.num_frames(int(x)) for x in lengths])
        text = torch.randint(0, cfg["classes"], (bsz, int(frames.max())), generator=g)
        text[torch.arange(text.size(1))[None] >= frames[:, None]] = -1
        batches.append({"speech": speech, "speech_lengths": lengths, "text": text,
                        "text_lengths": frames})
    return batches


class BareLoop:
    """forward, backward, clip_grad_norm_(5.0), Adam step, zero_grad, after_optimizer_step.

    Gradient clipping is included because the Trainer (and ESPnet's, ``grad_clip: 5``)
    always clips: the Trainer-vs-bare ratio then measures the loop's own overhead.
    """

    def __init__(self, model: torch.nn.Module, batches: list[dict], optimizer=None,
                 grad_clip: float = 5.0):
        self.model = model.train()
        self.batches = batches
        self.optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=5e-4)
        self.grad_clip = grad_clip
        self.i = 0
        self.step = 0

    def __call__(self) -> float:
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        loss, _, _ = self.model(**batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        after = getattr(self.model, "after_optimizer_step", None)
        if after is not None:
            after(self.step)
        return float(loss.detach())
