import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2.ssl.utils.mask import Masking
from espnet2.testing.tiny import lengths_to_padding_mask


def _run(masker, lengths, total=None, dim=4):
    lengths = torch.tensor(lengths)
    total = total or int(lengths.max())
    x = torch.randn(len(lengths), total, dim)
    pad = lengths_to_padding_mask(lengths, total)
    x_masked, mask = masker(x, pad)
    return x, x_masked, mask, pad


def test_ratio_on_long_inputs_is_about_57_percent():
    masker = Masking(4, mask_prob=0.8, mask_length=10)
    _, _, mask, _ = _run(masker, [4000] * 4)
    frac = mask.float().mean().item()
    # 1 - (1 - 0.08)^10 = 0.566; equalising to the batch minimum lowers it slightly
    assert 0.52 < frac < 0.60, frac


def test_same_count_per_row_and_never_on_padding():
    masker = Masking(4, mask_prob=0.8, mask_length=10)
    for _ in range(5):
        _, _, mask, pad = _run(masker, [300, 120, 57, 260])
        counts = mask.sum(1)
        assert (counts == counts[0]).all()
        assert counts[0] > 0
        assert not (mask & pad).any()


def test_masked_frames_get_embedding_others_untouched():
    masker = Masking(4, mask_prob=0.5, mask_length=3)
    x, x_masked, mask, _ = _run(masker, [50, 40])
    x_copy = x.clone()
    assert torch.equal(x_masked[mask], masker.mask_embedding.detach().expand(int(mask.sum()), 4))
    assert torch.equal(x_masked[~mask], x[~mask])
    assert torch.equal(x, x_copy)  # input not modified in place


def test_mask_prob_zero_is_a_clean_noop():
    masker = Masking(4, mask_prob=0.0)
    x, x_masked, mask, _ = _run(masker, [30, 20])
    assert mask.dtype == torch.bool and mask.shape == (2, 30)
    assert not mask.any()
    assert torch.equal(x, x_masked)


def test_short_fsdd_like_utterances():
    """~20 frames, mask_length 4: min_masks spans fit; tiny utterances never crash."""
    masker = Masking(4, mask_prob=0.8, mask_length=4, min_masks=2)
    _, _, mask, pad = _run(masker, [20, 18, 23])
    assert (mask.sum(1) > 0).all() and not (mask & pad).any()
    masker = Masking(4, mask_prob=0.8, mask_length=10, min_masks=2)
    _, _, mask, pad = _run(masker, [3, 1, 5])
    assert not (mask & pad).any()
    assert (mask.sum(1) == mask.sum(1)[0]).all()


def test_respects_manual_seed():
    masker = Masking(4, mask_prob=0.65, mask_length=5)
    lengths = torch.tensor([100, 80])
    pad = lengths_to_padding_mask(lengths, 100)
    x = torch.zeros(2, 100, 4)
    torch.manual_seed(3)
    m1 = masker(x, pad)[1]
    torch.manual_seed(3)
    m2 = masker(x, pad)[1]
    m3 = masker(x, pad)[1]
    assert torch.equal(m1, m2)
    assert not torch.equal(m2, m3)


def test_eval_masks_are_deterministic_and_leave_global_rng_alone():
    masker = Masking(4, mask_prob=0.65, mask_length=5).eval()
    pad = lengths_to_padding_mask(torch.tensor([100, 80]), 100)
    x = torch.zeros(2, 100, 4)
    state = torch.random.get_rng_state()
    m1 = masker(x, pad)[1]
    assert torch.equal(torch.random.get_rng_state(), state)
    m2 = masker(x, pad)[1]
    assert torch.equal(m1, m2) and m1.any()


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of True runs."""
    runs, start = [], None
    for i, v in enumerate(row.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def test_no_overlap_spans_keep_min_space():
    masker = Masking(4, mask_prob=0.5, mask_length=5, no_mask_overlap=True, mask_min_space=2,
                     require_same_masks=False)
    _, _, mask, _ = _run(masker, [200, 150])
    for row in mask:
        runs = _runs(row)
        assert runs and all(length == 5 for _, length in runs)
        gaps = [s2 - (s1 + n1) for (s1, n1), (s2, _) in zip(runs, runs[1:])]
        assert all(g >= 2 for g in gaps)


@pytest.mark.parametrize("selection", ["uniform", "normal", "poisson"])
def test_other_span_distributions(selection):
    masker = Masking(4, mask_prob=0.5, mask_length=5, mask_selection=selection, mask_other=2)
    _, _, mask, pad = _run(masker, [200, 120])
    assert mask.any() and not (mask & pad).any()


def test_channel_masking_zeroes_whole_channels():
    masker = Masking(32, mask_prob=0.0, mask_channel_prob=0.5, mask_channel_length=4)
    x, x_masked, _, _ = _run(masker, [40, 30], dim=32)
    zeroed = (x_masked == 0).all(dim=1)  # (B, C): channel zero at every frame
    assert zeroed.any()
    assert torch.equal(x_masked[~zeroed[:, None, :].expand_as(x)],
                       x[~zeroed[:, None, :].expand_as(x)])


def test_invalid_options_are_reported_together():
    with pytest.raises(ValueError, match="mask_prob=1.5.*mask_selection='bad'"):
        Masking(4, mask_prob=1.5, mask_selection="bad")


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 120), min_size=1, max_size=4),
       prob=st.floats(0.05, 1.0), span=st.integers(1, 12))
def test_invariants_hold_for_any_lengths(lengths, prob, span):
    masker = Masking(4, mask_prob=prob, mask_length=span)
    _, _, mask, pad = _run(masker, lengths)
    assert not (mask & pad).any()
    assert (mask.sum(1) == mask.sum(1)[0]).all()
