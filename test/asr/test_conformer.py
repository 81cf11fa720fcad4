"""Conformer encoder, relative attention (SDPA vs explicit softmax), positional encodings."""

from __future__ import annotations

import math

import pytest
import torch

from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.layers.convolution_module import ConvolutionModule, MaskedBatchNorm1d
from espnet2.layers.rel_attention import (
    LegacyRelPositionMultiHeadedAttention,
    RelPositionMultiHeadedAttention,
    rel_shift,
)
from espnet2.layers.rel_pos_enc import LegacyRelPositionalEncoding, RelPositionalEncoding

D = 16


def lengths_mask(lengths: list[int], t: int) -> torch.Tensor:
    """(B, 1, T) bool, True on valid frames."""
    return (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


def naive_rel_attention(att, x, pos_emb, mask, legacy=False):
    """Explicit per-(i, j) Transformer-XL scores, masked softmax, weighted sum."""
    b, t, _ = x.shape
    h, dk = att.h, att.d_k
    q = att.linear_q(x).view(b, t, h, dk)
    k = att.linear_k(x).view(b, t, h, dk)
    v = att.linear_v(x).view(b, t, h, dk)
    p = att.linear_pos(pos_emb).view(pos_emb.size(1), h, dk)
    scores = torch.empty(b, h, t, t)
    for i in range(t):
        for j in range(t):
            # relative position i - j lives at index T - 1 - (i - j) of pos_emb (latest).
            pj = p[j] if legacy else p[t - 1 - (i - j)]
            ac = ((q[:, i] + att.pos_bias_u) * k[:, j]).sum(-1)
            bd = ((q[:, i] + att.pos_bias_v) * pj).sum(-1)
            if att.zero_triu and not legacy and j > i:
                bd = torch.zeros_like(bd)
            scores[:, :, i, j] = (ac + bd) / math.sqrt(dk)
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    ctx = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(b, t, h * dk)
    return att.linear_out(ctx)


def test_rel_shift_indexes_relative_positions():
    t = 5
    scores = torch.randn(2, 3, t, 2 * t - 1)
    out = rel_shift(scores)
    assert out.shape == (2, 3, t, t)
    for i in range(t):
        for j in range(t):
            torch.testing.assert_close(out[..., i, j], scores[..., i, t - 1 - i + j])


def test_rel_positional_encoding_layout():
    enc = RelPositionalEncoding(D, 0.0, max_len=8).eval()
    x = torch.randn(2, 6, D)
    xs, pos = enc(x)
    torch.testing.assert_close(xs, x * math.sqrt(D))
    assert pos.shape == (1, 11, D)
    center = pos[0, 5]  # relative position 0: sin(0) = 0, cos(0) = 1
    torch.testing.assert_close(center[0::2], torch.zeros(D // 2))
    torch.testing.assert_close(center[1::2], torch.ones(D // 2))
    assert torch.allclose(pos[0, 4, 0], torch.sin(torch.tensor(1.0)))  # position +1, channel 0
    assert torch.allclose(pos[0, 6, 0], torch.sin(torch.tensor(-1.0)))  # position -1
    # Inputs longer than max_len extend the table; the shorter table is a centred sub-slice.
    _, pos_long = enc(torch.randn(1, 20, D))
    assert pos_long.shape == (1, 39, D)
    torch.testing.assert_close(pos_long[:, 19 - 5 : 19 + 6], pos)


@pytest.mark.parametrize("zero_triu", [False, True])
def test_rel_attention_matches_naive_reference(zero_triu):
    att = RelPositionMultiHeadedAttention(4, D, 0.0, zero_triu=zero_triu).eval()
    x = torch.randn(2, 7, D)
    _, pos = RelPositionalEncoding(D, 0.0)(x)
    mask = lengths_mask([7, 4], 7)
    got = att(x, x, x, pos, mask)
    ref = naive_rel_attention(att, x, pos, mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_legacy_rel_attention_matches_naive_reference():
    att = LegacyRelPositionMultiHeadedAttention(2, D, 0.0).eval()
    x = torch.randn(2, 6, D)
    _, pos = LegacyRelPositionalEncoding(D, 0.0, max_len=50)(x)
    assert pos.shape == (1, 6, D)
    mask = lengths_mask([6, 3], 6)
    got = att(x, x, x, pos, mask)
    torch.testing.assert_close(got, naive_rel_attention(att, x, pos, mask, legacy=True),
                               atol=1e-5, rtol=1e-5)


def test_rel_attention_zero_length_row_is_finite_zero_context():
    att = RelPositionMultiHeadedAttention(2, D, 0.0).eval()
    x = torch.randn(2, 4, D)
    _, pos = RelPositionalEncoding(D, 0.0)(x)
    out = att(x, x, x, pos, lengths_mask([4, 0], 4))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], att.linear_out.bias.expand(4, D))


def make_conformer(input_size: int = 12, **kw) -> ConformerEncoder:
    conf = dict(output_size=D, attention_heads=2, linear_units=32, num_blocks=2,
                input_layer=None, rel_pos_type="latest", cnn_module_kernel=5,
                dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1)
    conf.update(kw)
    return ConformerEncoder(input_size=input_size, **conf)


def test_shapes_lengths_and_all_hidden_states():
    enc = make_conformer(input_size=12).eval()
    xs, ilens = torch.randn(2, 9, 12), torch.tensor([9, 6])
    out, olens, state = enc(xs, ilens)
    assert out.shape == (2, 9, D) and state is None and enc.output_size() == D
    assert olens.tolist() == [9, 6]
    (out2, hs), olens2, _ = enc(xs, ilens, return_all_hs=True)
    assert len(hs) == enc.num_layers() == 2
    assert hs[-1] is out2
    torch.testing.assert_close(out2, out)
    assert not torch.allclose(hs[0], hs[1])
    torch.testing.assert_close(olens2, olens)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"macaron_style": True, "cnn_module_norm": "layer_norm"},
        {"rel_pos_type": "legacy"},
        {"pos_enc_layer_type": "abs_pos", "selfattn_layer_type": "selfattn"},
        {"normalize_before": False, "concat_after": True},
        {"input_layer": "linear", "zero_triu": True},
    ],
)
def test_padding_invariance(kw):
    enc = make_conformer(input_size=12, **kw)
    # Non-trivial BatchNorm running statistics, so eval-mode BN is not the identity.
    for layer in enc.encoders:
        if layer.conv_module is not None and isinstance(layer.conv_module.norm, MaskedBatchNorm1d):
            layer.conv_module.norm.running_mean.uniform_(-1, 1)
            layer.conv_module.norm.running_var.uniform_(0.5, 2)
    enc.eval()
    long, short = torch.randn(1, 11, 12), torch.randn(1, 6, 12)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 5), value=7.0)])
    (out, hs), _, _ = enc(batch, torch.tensor([11, 6]), return_all_hs=True)
    (alone, hs_alone), _, _ = enc(short, torch.tensor([6]), return_all_hs=True)
    torch.testing.assert_close(out[1, :6], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hs[0][1, :6], hs_alone[0][0], atol=1e-5, rtol=1e-5)
    long_alone, _, _ = enc(long, torch.tensor([11]))
    torch.testing.assert_close(out[0], long_alone[0], atol=1e-5, rtol=1e-5)


def test_masks_argument_conventions():
    enc = make_conformer().eval()
    xs, ilens = torch.randn(2, 8, 12), torch.tensor([8, 5])
    ref, _, _ = enc(xs, ilens)
    pad_mask = ~lengths_mask([8, 5], 8)[:, 0]  # (B, T) True on padding
    out2, olens2, _ = enc(xs, ilens, masks=pad_mask)
    out3, olens3, _ = enc(xs, ilens, masks=lengths_mask([8, 5], 8))
    torch.testing.assert_close(out2, ref)
    torch.testing.assert_close(out3, ref)
    assert olens2.tolist() == olens3.tolist() == [8, 5]
    with pytest.raises(ValueError, match="ilens"):
        enc(xs, torch.tensor([9, 5]))


def test_masked_batch_norm_ignores_padding_in_training():
    bn = MaskedBatchNorm1d(3, momentum=1.0)
    x = torch.randn(2, 3, 6)
    valid = lengths_mask([6, 4], 6)
    garbage = x.clone()
    garbage[1, :, 4:] = 100.0
    y1, y2 = bn(x, valid), bn(garbage, valid)
    torch.testing.assert_close(y1[valid.expand_as(y1)], y2[valid.expand_as(y2)])
    frames = torch.cat([x[0], x[1, :, :4]], dim=1)  # (C, 10) valid frames only
    torch.testing.assert_close(bn.running_mean, frames.mean(1))
    torch.testing.assert_close(bn.running_var, frames.var(1))


def test_conv_module_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        ConvolutionModule(D, 4)


def test_bad_options_raise_clear_errors():
    with pytest.raises(NotImplementedError, match="frame-preserving"):
        make_conformer(input_layer="conv2d")
    with pytest.raises(ValueError, match="rel_pos_type"):
        make_conformer(rel_pos_type="new")
    with pytest.raises(ValueError, match="needs the attention type"):
        make_conformer(pos_enc_layer_type="rel_pos", selfattn_layer_type="selfattn")


def test_gradients_flow_to_every_parameter():
    enc = make_conformer(macaron_style=True).train()
    out, _, _ = enc(torch.randn(2, 7, 12), torch.tensor([7, 5]))
    out.pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_activation_checkpointing_gives_identical_grads(dropout):
    xs, ilens = torch.randn(2, 7, 12), torch.tensor([7, 5])
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(3)
        enc = make_conformer(activation_checkpointing=ckpt, dropout_rate=dropout,
                             stochastic_depth_rate=0.3, macaron_style=True).train()
        torch.manual_seed(4)
        out, _, _ = enc(xs, ilens)
        out.sum().backward()
        grads.append({n: p.grad for n, p in enc.named_parameters()})
    assert sum(g is not None for g in grads[0].values()) > 0
    for name in grads[0]:
        a, b = grads[0][name], grads[1][name]
        assert (a is None) == (b is None), name  # same blocks skipped by stochastic depth
        if a is not None:
            torch.testing.assert_close(a, b, msg=name)


def test_layer_drop_skips_blocks_in_training_only():
    enc = make_conformer(layer_drop_rate=1.0, dropout_rate=0.0, positional_dropout_rate=0.0)
    xs, ilens = torch.randn(2, 7, 12), torch.tensor([7, 5])
    out, _, _ = enc.train()(xs, ilens)
    expected = enc.after_norm(enc.embed(xs)[0])
    torch.testing.assert_close(out, expected)
    out_eval, _, _ = enc.eval()(xs, ilens)
    assert not torch.allclose(out_eval, expected)


def test_zero_length_utterance_gives_finite_outputs_and_grads():
    enc = make_conformer().train()
    out, olens, _ = enc(torch.randn(2, 6, 12), torch.tensor([6, 0]))
    out.sum().backward()
    assert olens.tolist() == [6, 0] and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_rel_attention_gradients_match_naive_reference():
    att = RelPositionMultiHeadedAttention(2, D, 0.0)
    x = torch.randn(2, 5, D, requires_grad=True)
    _, pos = RelPositionalEncoding(D, 0.0)(x)
    mask = lengths_mask([5, 3], 5)
    grads = []
    for fn in (lambda: att(x, x, x, pos, mask), lambda: naive_rel_attention(att, x, pos, mask)):
        att.zero_grad()
        x.grad = None
        fn()[:, :3].pow(2).sum().backward()
        grads.append([x.grad.clone(), att.pos_bias_u.grad.clone(), att.pos_bias_v.grad.clone(),
                      att.linear_pos.weight.grad.clone()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
