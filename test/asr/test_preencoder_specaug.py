"""Linear pre-encoder, SpecAug masking, utterance and global MVN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.asr.specaug.specaug import SpecAug
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.layers.utterance_mvn import UtteranceMVN


def test_linear_projection():
    pre = LinearProjection(12, 16, dropout=0.5).eval()
    x, ilens = torch.randn(2, 7, 12), torch.tensor([7, 3])
    y, olens = pre(x, ilens)
    assert y.shape == (2, 7, 16) and pre.output_size() == 16 and olens is ilens
    torch.testing.assert_close(y, pre.linear_out(x))
    assert sum(p.numel() for p in LinearProjection(512, 768).parameters()) == 512 * 768 + 768


def test_specaug_is_identity_in_eval():
    aug = SpecAug(time_mask_width_range=(0, 5)).eval()
    x = torch.randn(2, 30, 20)
    y, _ = aug(x, torch.tensor([30, 20]))
    assert torch.equal(x, y)


def test_specaug_masks_whole_bins_and_frames_within_limits():
    aug = SpecAug(
        freq_mask_width_range=(2, 4),
        num_freq_mask=2,
        time_mask_width_range=(3, 6),
        num_time_mask=2,
    ).train()
    x = torch.randn(8, 40, 20) + 10.0  # never 0 unless masked
    lengths = torch.tensor([40, 35, 30, 25, 20, 15, 12, 10])
    y, olens = aug(x, lengths)
    assert torch.equal(olens, lengths)
    zero = y == 0
    freq_masked = zero.all(dim=1)  # (B, D): bins masked over all frames
    time_masked = zero.all(dim=2)  # (B, T): frames masked over all bins
    for b, n in enumerate(lengths.tolist()):
        nf = int(freq_masked[b].sum())
        assert 2 <= nf <= 2 * 3  # at least one mask of width >= 2, at most 2 of width 3
        nt = int(time_masked[b].sum())
        assert 3 <= nt <= 2 * 5
        assert not time_masked[b, n:].any()  # time masks stay inside the utterance
        # every zero is explained by a masked bin or a masked frame
        explained = freq_masked[b].unsqueeze(0) | time_masked[b].unsqueeze(1)
        assert torch.equal(zero[b], explained)


def test_specaug_ratio_widths_scale_with_each_length():
    aug = SpecAug(apply_freq_mask=False, time_mask_width_ratio_range=(0.5, 0.5), num_time_mask=1)
    x = torch.randn(2, 40, 4) + 10.0
    y, _ = aug.train()(x, torch.tensor([40, 10]))
    assert (y[0] == 0).all(dim=1).sum() == 20 and (y[1] == 0).all(dim=1).sum() == 5


def test_specaug_bad_options():
    with pytest.raises(NotImplementedError, match="apply_time_warp"):
        SpecAug(apply_time_warp=True, time_mask_width_range=(0, 5))
    with pytest.raises(ValueError, match="time_mask_width_range"):
        SpecAug()
    with pytest.raises(ValueError, match="freq_mask_width_range"):
        SpecAug(freq_mask_width_range=(5, 2), time_mask_width_range=(0, 5))


@pytest.mark.parametrize("norm_vars", [False, True])
def test_utterance_mvn_uses_valid_frames_only(norm_vars):
    mvn = UtteranceMVN(norm_means=True, norm_vars=norm_vars)
    x = torch.randn(2, 10, 3) * 4 + 2
    x[1, 6:] = 100.0
    y, _ = mvn(x, torch.tensor([10, 6]))
    alone, _ = mvn(x[1:, :6], torch.tensor([6]))
    torch.testing.assert_close(y[1, :6], alone[0])
    assert torch.all(y[1, 6:] == 0)
    torch.testing.assert_close(y[0].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    if norm_vars:
        torch.testing.assert_close(y[0].var(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(y[0], x[0] - x[0].mean(0))


def test_global_mvn_from_stats_file(tmp_path):
    feats = torch.randn(50, 3).double() * torch.tensor([1.0, 2.0, 3.0]) + 5
    np.savez(
        tmp_path / "feats_stats.npz",
        count=np.array(50),
        sum=feats.sum(0).numpy(),
        sum_square=feats.square().sum(0).numpy(),
    )
    mvn = GlobalMVN(tmp_path / "feats_stats.npz")
    y, _ = mvn(feats.float().view(1, 50, 3), torch.tensor([50]))
    torch.testing.assert_close(y[0].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y[0].std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    padded, _ = mvn(torch.ones(2, 4, 3), torch.tensor([4, 2]))
    assert torch.all(padded[1, 2:] == 0)
    with pytest.raises(FileNotFoundError, match="collect_stats"):
        GlobalMVN(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="dimension 5"):
        mvn(torch.ones(1, 2, 5))


def test_warp_freq_identity_and_peak_moves_with_the_factor():
    from espnet2.asr.specaug.specaug import warp_freq

    x = torch.randn(3, 5, 40)
    torch.testing.assert_close(warp_freq(x, torch.ones(3)), x)
    peak = torch.zeros(2, 4, 40)
    peak[:, :, 10] = 1.0  # a "formant" at bin 10
    y = warp_freq(peak, torch.tensor([1.2, 0.8]))
    assert int(y[0, 0].argmax()) == 12 and int(y[1, 0].argmax()) == 8
    assert torch.equal(y[:, 0], y[:, 3])  # every frame warped alike, none moved in time
    # a stretch below 1 repeats the top bin rather than inventing values
    ramp = torch.arange(40.0).expand(1, 2, 40)
    assert float(warp_freq(ramp, torch.tensor([0.5])).max()) == 39.0


def test_specaug_freq_warp_only_draws_per_utterance_factors():
    aug = SpecAug(apply_freq_mask=False, apply_time_mask=False, apply_freq_warp=True,
                  freq_warp_range=(0.8, 1.25)).train()
    x = torch.arange(30.0).expand(4, 6, 30).contiguous()
    y, _ = aug(x, torch.tensor([6, 6, 6, 6]))
    assert y.shape == x.shape and not torch.equal(y[0], y[1])
    slopes = (y[:, 0, 5] - y[:, 0, 4])  # d(source bin)/d(bin) = 1 / factor
    assert bool(((slopes >= 0.8 - 1e-5) & (slopes <= 1.25 + 1e-5)).all())
    assert torch.equal(aug.eval()(x, None)[0], x)


@pytest.mark.parametrize("rng", [(1.1, 0.9), (0.0, 1.0), (1.0,)])
def test_specaug_rejects_bad_warp_range(rng):
    with pytest.raises(ValueError, match="freq_warp_range"):
        SpecAug(apply_freq_warp=True, freq_warp_range=rng, apply_time_mask=False)
