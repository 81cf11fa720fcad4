"""SDPA multi-head attention and the convolutional positional embedding."""

from __future__ import annotations

import math

import pytest
import torch

from espnet2.layers.attention import MultiHeadedAttention, lengths_to_mask
from espnet2.layers.conv_pos import ConvolutionalPositionalEmbedding


def naive_attention(att: MultiHeadedAttention, q, k, v, mask):
    """Textbook softmax attention with ESPnet's masking (masked weights set to 0)."""
    b, t1, d = q.shape
    h, dk = att.h, att.d_k

    def heads(x, lin):
        return lin(x).view(b, -1, h, dk).transpose(1, 2)

    scores = heads(q, att.linear_q) @ heads(k, att.linear_k).transpose(-2, -1) / math.sqrt(dk)
    if mask is not None:
        invalid = ~mask.unsqueeze(1)  # (B, 1, T1 or 1, T2)
        scores = scores.masked_fill(invalid, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0).masked_fill(invalid, 0.0)
    else:
        weights = torch.softmax(scores, dim=-1)
    context = (weights @ heads(v, att.linear_v)).transpose(1, 2).reshape(b, t1, d)
    return att.linear_out(context)


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([3, 0, 1]), 4)
    assert mask.tolist() == [
        [True, True, True, False],
        [False, False, False, False],
        [True, False, False, False],
    ]


def test_parameter_names_follow_espnet():
    names = {n for n, _ in MultiHeadedAttention(2, 16, 0.0).named_parameters()}
    modules = ("linear_q", "linear_k", "linear_v", "linear_out")
    assert names == {f"{m}.{p}" for m in modules for p in ("weight", "bias")}


@pytest.mark.parametrize("mask_kind", ["none", "key_padding", "full"])
def test_sdpa_equals_naive_reference(mask_kind):
    att = MultiHeadedAttention(4, 16, dropout_rate=0.3).eval()  # eval: no dropout
    q, k, v = torch.randn(3, 2, 7, 16).unbind(0)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "key_padding":
        mask = lengths_to_mask(torch.tensor([7, 4]), 7).unsqueeze(1)  # (B, 1, T)
    else:
        mask = torch.rand(2, 7, 7) > 0.4
        mask[:, :, 0] = True
    torch.testing.assert_close(att(q, k, v, mask), naive_attention(att, q, k, v, mask))


def test_fully_masked_rows_are_finite_with_finite_gradients():
    att = MultiHeadedAttention(2, 16, 0.0)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = lengths_to_mask(torch.tensor([5, 0]), 5).unsqueeze(1)  # utterance 2 is empty
    full = torch.rand(2, 5, 5) > 0.5
    full[0, 2] = False  # one query row with no valid key
    for m in (mask, full):
        out = att(x, x, x, m)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, naive_attention(att, x, x, x, m))
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None
    # empty rows give a zero context: output is linear_out's bias
    out = att(x, x, x, mask)
    torch.testing.assert_close(out[1], att.linear_out.bias.expand(5, 16))


def test_attention_padding_invariance():
    att = MultiHeadedAttention(4, 16, 0.1).eval()
    x = torch.randn(2, 9, 16)
    x[1, 5:] = 1e3  # padding garbage
    mask = lengths_to_mask(torch.tensor([9, 5]), 9).unsqueeze(1)
    out = att(x, x, x, mask)
    alone = att(x[1:, :5], x[1:, :5], x[1:, :5], None)
    torch.testing.assert_close(out[1, :5], alone[0], rtol=1e-5, atol=1e-5)


def test_attention_dropout_only_in_training():
    att = MultiHeadedAttention(2, 16, 0.5)
    x = torch.randn(1, 6, 16)
    att.train()
    assert not torch.allclose(att(x, x, x, None), att(x, x, x, None))
    att.eval()
    torch.testing.assert_close(att(x, x, x, None), att(x, x, x, None))


def test_bad_head_count_is_named():
    with pytest.raises(ValueError, match="n_feat=10 is not divisible by n_head=4"):
        MultiHeadedAttention(4, 10, 0.0)


# --------------------------------------------------------------------------- conv positional


@pytest.mark.parametrize("kernel", [8, 7])
def test_conv_pos_shapes_and_weight_norm(kernel):
    pos = ConvolutionalPositionalEmbedding(16, kernel_size=kernel, groups=4)
    params = dict(pos.named_parameters())
    assert params["conv.parametrizations.weight.original0"].shape == (1, 1, kernel)
    assert params["conv.parametrizations.weight.original1"].shape == (16, 4, kernel)
    assert params["conv.bias"].shape == (16,)
    x = torch.randn(2, 11, 16)
    assert pos(x).shape == (2, 11, 16)


def test_conv_pos_padding_invariance():
    pos = ConvolutionalPositionalEmbedding(16, kernel_size=6, groups=2)
    x = torch.randn(2, 12, 16)
    x[1, 7:] = 50.0
    lengths = torch.tensor([12, 7])
    for mask in (lengths_to_mask(lengths, 12), lengths_to_mask(lengths, 12).unsqueeze(1)):
        out = pos(x, mask)
        torch.testing.assert_close(out[1, :7], pos(x[1:, :7])[0], rtol=1e-5, atol=1e-5)
    # without the mask the padding leaks into valid frames (the test above is not vacuous)
    assert not torch.allclose(pos(x)[1, :7], pos(x[1:, :7])[0], atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_sdpa_matches_reference():
    att = MultiHeadedAttention(4, 64, 0.0).cuda().eval()
    x = torch.randn(2, 50, 64, device="cuda")
    mask = lengths_to_mask(torch.tensor([50, 31], device="cuda"), 50).unsqueeze(1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = att(x, x, x, mask).float()
    ref = naive_attention(att, x, x, x, mask)
    torch.testing.assert_close(out, ref, atol=5e-2, rtol=5e-2)
