"""CNN (wav2vec 2.0) and log-mel frontends: frame counts, padding invariance, parameter count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.data.frames import FrameGeometry, compose, num_frames_per_layer
from espnet2.layers.masked_norm import MaskedGroupNorm, _MaskedGroupNormFunction
from espnet2.layers.mel import hz_to_mel, mel_filterbank, mel_to_hz

TINY_SHAPES = [(8, 10, 5), (8, 3, 2), (8, 2, 2)]
NORMS = ["group_norm", "layer_norm"]
CONVS = ["standard", "depth_only", "depth_sep"]


def _tiny_cnn(norm_mode: str, conv_mode: str, **kwargs) -> CNNFrontend:
    return CNNFrontend(norm_mode, conv_mode, bias=True, shapes=TINY_SHAPES, **kwargs).eval()


def _batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    return x, torch.tensor(lengths)


def test_hubert_base_extractor_parameter_count():
    frontend = CNNFrontend("group_norm", "standard", bias=False)
    # conv 1: 512*1*10, GroupNorm(512): 2*512, conv 2-5: 4*512*512*3, conv 6-7: 2*512*512*2
    expected = 512 * 10 + 2 * 512 + 4 * 512 * 512 * 3 + 2 * 512 * 512 * 2
    assert expected == 4_200_448
    assert sum(p.numel() for p in frontend.parameters()) == expected
    assert frontend.frame_geometry() == FrameGeometry(400, 320, 0)
    assert frontend.output_size() == 512


@pytest.mark.parametrize("norm_mode", NORMS)
@pytest.mark.parametrize("conv_mode", CONVS)
def test_cnn_shapes_and_lengths(norm_mode, conv_mode):
    frontend = _tiny_cnn(norm_mode, conv_mode)
    geometry = frontend.frame_geometry()
    assert geometry == compose([(k, s) for _, k, s in TINY_SHAPES])
    lengths = [700, 333, 47, 10]  # 10 samples: shorter than the receptive field -> 0 frames
    x, ilens = _batch(lengths)
    with torch.no_grad():
        y, olens = frontend(x, ilens)
    expected = [geometry.num_frames(n) for n in lengths]
    assert olens.tolist() == expected
    layers = [(k, s) for _, k, s in TINY_SHAPES]
    assert expected == [num_frames_per_layer(n, layers) for n in lengths]
    assert y.shape == (4, max(expected), 8)
    assert torch.isfinite(y).all()
    for i, n in enumerate(expected):
        assert torch.all(y[i, n:] == 0)


@pytest.mark.parametrize("norm_mode", NORMS)
@pytest.mark.parametrize("conv_mode", CONVS)
@pytest.mark.parametrize("normalize_audio", [False, True])
def test_cnn_padding_invariance(norm_mode, conv_mode, normalize_audio):
    frontend = _tiny_cnn(norm_mode, conv_mode, normalize_audio=normalize_audio)
    x, ilens = _batch([900, 512, 260])
    x[1, 512:] = 5.0  # garbage in the padding must not matter either
    with torch.no_grad():
        y, olens = frontend(x, ilens)
        for i, n in enumerate(ilens.tolist()):
            alone, alone_len = frontend(x[i : i + 1, :n], ilens[i : i + 1])
            assert alone_len.item() == olens[i].item()
            torch.testing.assert_close(y[i, : olens[i]], alone[0], rtol=1e-4, atol=1e-5)


def test_cnn_normalize_audio_is_scale_invariant():
    frontend = _tiny_cnn("group_norm", "standard", normalize_audio=True)
    x, ilens = _batch([600, 400])
    with torch.no_grad():
        y1, _ = frontend(x, ilens)
        y2, _ = frontend(3.0 * x + 0.5 * (x != 0), ilens)
    torch.testing.assert_close(y1, y2, rtol=1e-3, atol=1e-4)


def test_cnn_normalize_output_gives_unit_frames():
    frontend = _tiny_cnn("layer_norm", "standard", normalize_output=True)
    x, ilens = _batch([600])
    with torch.no_grad():
        y, _ = frontend(x, ilens)
    torch.testing.assert_close(y.mean(-1), torch.zeros(y.shape[:2]), atol=1e-5, rtol=0)


def test_cnn_checkpointing_same_gradients():
    torch.manual_seed(1)
    plain = _tiny_cnn("group_norm", "standard").train()
    ckpt = _tiny_cnn("group_norm", "standard", checkpoint_layers=2).train()
    ckpt.load_state_dict(plain.state_dict())
    x, ilens = _batch([700, 420])
    grads = []
    for model in (plain, ckpt):
        y, olens = model(x, ilens)
        (y.square().sum() / olens.sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_cnn_bad_options_are_named():
    with pytest.raises(ValueError, match="conv_mode='depth'"):
        CNNFrontend("group_norm", "depth", False, shapes=TINY_SHAPES)
    with pytest.raises(ValueError, match="norm_mode='batch_norm'"):
        CNNFrontend("batch_norm", "standard", False, shapes=TINY_SHAPES)
    with pytest.raises(ValueError, match="got shape"):
        _tiny_cnn("group_norm", "standard")(torch.zeros(1, 2, 100), torch.tensor([100]))


@pytest.mark.parametrize("groups", [6, 3, 1])
def test_masked_group_norm_matches_group_norm_on_valid_part(groups):
    norm = MaskedGroupNorm(groups, 6)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 6, 20)
    x[1, :, 13:] = 100.0
    out = norm(x, torch.tensor([20, 13]))
    ref = torch.nn.functional.group_norm(x[1:, :, :13], groups, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out[1:, :, :13], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:1], norm(x[:1]), rtol=1e-5, atol=1e-5)
    assert torch.all(out[1, :, 13:] == norm.bias.view(6, 1))  # padding output = bias


@pytest.mark.parametrize("groups", [4, 2])
def test_masked_group_norm_gradients(groups):
    norm = MaskedGroupNorm(groups, 4).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    lengths = torch.tensor([9, 5, 0])
    x = torch.randn(3, 4, 9, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, 9, dtype=torch.float64)
    valid = (torch.arange(9) < lengths.view(3, 1)).unsqueeze(1)
    # loss over valid steps only vs per-utterance nn.GroupNorm on the trimmed input
    (norm(x, lengths) * target * valid).sum().backward()
    got = (x.grad.clone(), norm.weight.grad.clone(), norm.bias.grad.clone())
    x.grad = norm.weight.grad = norm.bias.grad = None
    for i, n in enumerate(lengths.tolist()):
        if n:
            (norm(x[i : i + 1, :, :n]) * target[i : i + 1, :, :n]).sum().backward()
    torch.testing.assert_close(got[0], x.grad)
    torch.testing.assert_close(got[1], norm.weight.grad)
    torch.testing.assert_close(got[2], norm.bias.grad)
    assert torch.all(got[0][1, :, 5:] == 0) and torch.all(got[0][2] == 0)

    inputs = (
        torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True),
        lengths[:2],
        groups,
        torch.randn(4, dtype=torch.float64, requires_grad=True),
        torch.randn(4, dtype=torch.float64, requires_grad=True),
        1e-5,
    )
    assert torch.autograd.gradcheck(_MaskedGroupNormFunction.apply, inputs)


# --------------------------------------------------------------------------- log-mel frontend


@pytest.mark.parametrize("center", [True, False])
def test_default_frontend_lengths_and_padding_invariance(center):
    frontend = DefaultFrontend(fs="8k", n_fft=64, hop_length=16, n_mels=10, center=center)
    assert frontend.fs == 8000
    geometry = frontend.frame_geometry()
    assert geometry == FrameGeometry(64, 16, 32 if center else 0)
    x, ilens = _batch([400, 250, 97])
    x[2, 97:] = 1.0
    y, olens = frontend(x, ilens)
    assert olens.tolist() == [geometry.num_frames(n) for n in ilens.tolist()]
    assert y.shape == (3, olens.max().item(), 10)
    for i, n in enumerate(ilens.tolist()):
        assert torch.all(y[i, olens[i] :] == 0)
        alone, _ = frontend(x[i : i + 1, :n], ilens[i : i + 1])
        torch.testing.assert_close(y[i, : olens[i]], alone[0], rtol=1e-4, atol=1e-4)


def test_default_frontend_matches_torch_stft_reference():
    frontend = DefaultFrontend(fs=16000, n_fft=128, win_length=100, hop_length=32, n_mels=20)
    x = torch.randn(1, 1000)
    y, _ = frontend(x, torch.tensor([1000]))
    spec = torch.stft(
        x, 128, 32, 100, window=torch.hann_window(100), center=True, return_complex=True
    )
    melmat = torch.from_numpy(mel_filterbank(16000, 128, 20))
    ref = (melmat @ spec.abs().square()).clamp(min=1e-10).log().transpose(1, 2)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def test_default_frontend_precomputed_stft_input():
    frontend = DefaultFrontend(n_fft=64, n_mels=8, apply_stft=False)
    spec = torch.randn(2, 5, 33, 2)
    y, olens = frontend(spec, torch.tensor([5, 3]))
    assert y.shape == (2, 5, 8) and olens.tolist() == [5, 3]
    assert torch.all(y[1, 3:] == 0)


def test_mel_scales():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: 3 mels per 200 Hz below 1 kHz
    assert hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above
    assert hz_to_mel(700.0, htk=True) == pytest.approx(2595.0 * math.log10(2.0))
    f = np.array([0.0, 50.0, 999.0, 1000.0, 4321.0, 8000.0])
    for htk in (False, True):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk), htk), f, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_filterbank_triangles(htk):
    fs, n_fft, n_mels = 16000, 2048, 40
    weights = mel_filterbank(fs, n_fft, n_mels, fmin=100, fmax=7000, htk=htk)
    assert weights.shape == (n_mels, n_fft // 2 + 1)
    assert (weights >= 0).all()
    freqs = np.linspace(0, fs / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(100, htk), hz_to_mel(7000, htk), n_mels + 2), htk)
    peaks = freqs[weights.argmax(axis=1)]
    assert np.all(np.abs(peaks - edges[1:-1]) <= fs / n_fft)  # peaks at mel-spaced centres
    assert weights[:, freqs < 100].max() == 0 and weights[:, freqs > 7000].max() == 0
    # Slaney area normalisation: each triangle integrates to ~1 over frequency
    areas = weights.sum(axis=1) * (fs / n_fft)
    np.testing.assert_allclose(areas, 1.0, rtol=0.05)
