"""Utterance mixing (WavLM): what is added, how loud, where, and that targets stay clean."""

from __future__ import annotations

import pytest
import torch

from espnet2.ssl.utils.mix import UtteranceMixing


def _batch(B=4, N=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(B, N, generator=g) * torch.linspace(0.5, 2.0, B)[:, None]
    lengths = torch.tensor([N, N - 100, N - 300, N - 50][:B])
    for b, n in enumerate(lengths):
        speech[b, n:] = 0
    return speech, lengths


def test_every_mixed_row_gets_one_segment_of_another_row_at_the_drawn_energy_ratio():
    speech, lengths = _batch()
    mix = UtteranceMixing(mix_prob=1.0, max_overlap=0.5, snr_range=(3.0, 3.0)).train()
    torch.manual_seed(0)
    out = mix(speech, lengths)
    for b in range(4):
        n = int(lengths[b])
        added = out[b] - speech[b]
        where = torch.nonzero(added.abs() > 0).flatten()
        assert len(where) > 0, b
        start, stop = int(where[0]), int(where[-1]) + 1
        assert stop <= n and stop - start <= int(0.5 * n)  # inside the valid part, <= 50 %
        seg = added[start:stop]
        # the segment is a scaled copy of a contiguous piece of some other row
        found = False
        for j in range(4):
            if j == b:
                continue
            for s in range(int(lengths[j]) - len(seg) + 1):
                src = speech[j, s:s + len(seg)]
                gain = seg.dot(src) / src.dot(src)
                if torch.allclose(seg, gain * src, atol=1e-5):
                    ratio_db = 10 * torch.log10(speech[b, :n].pow(2).mean() / seg.pow(2).mean())
                    assert float(ratio_db) == pytest.approx(3.0, abs=1e-3)
                    found = True
                    break
            if found:
                break
        assert found, f"row {b}: the added signal is not a scaled segment of another row"
        assert torch.equal(out[b, n:], torch.zeros(len(out[b, n:])))  # padding stays silent


def test_eval_mode_probability_zero_and_a_single_utterance_leave_the_input_alone():
    speech, lengths = _batch()
    assert UtteranceMixing(mix_prob=1.0).eval()(speech, lengths) is speech
    assert UtteranceMixing(mix_prob=0.0).train()(speech, lengths) is speech
    one = speech[:1]
    assert UtteranceMixing(mix_prob=1.0).train()(one, lengths[:1]) is one


def test_mix_probability_is_the_fraction_of_rows_changed():
    speech, lengths = _batch(B=4)
    mix = UtteranceMixing(mix_prob=0.25).train()
    torch.manual_seed(1)
    changed = sum(int((mix(speech, lengths) != speech).any(1).sum()) for _ in range(400))
    assert changed / 1600 == pytest.approx(0.25, abs=0.04)


@pytest.mark.parametrize("kw,msg", [({"mix_prob": 1.5}, "mix_prob=1.5"),
                                    ({"max_overlap": 0.0}, "max_overlap=0.0"),
                                    ({"snr_range": (5, -5)}, "snr_range")])
def test_bad_options_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        UtteranceMixing(**kw)


def test_model_mixes_only_the_student_input_in_training():
    """The frontend sees the mixed waveform in training, the clean one in eval; an EMA teacher
    (DinoSR) is fed the clean input."""
    from espnet2.testing.tiny import tiny_model

    model = tiny_model(losses=("dinosr",))
    model.mixer = UtteranceMixing(mix_prob=1.0, snr_range=(0.0, 0.0))
    seen = []
    model.frontend.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    speech = torch.randn(3, 400)
    lengths = torch.tensor([400, 400, 400])
    model.train()
    model(speech, lengths)
    assert len(seen) == 2  # student (mixed) and teacher (clean)
    assert not torch.equal(seen[0], speech) and torch.equal(seen[1], speech)
    seen.clear()
    model.eval()
    with torch.no_grad():
        model(speech, lengths)
    assert len(seen) == 1 and torch.equal(seen[0], speech)


def test_silence_is_neither_amplified_nor_turned_into_nan():
    """A silent partner adds nothing; a silent primary gets nothing (gain 0, not inf)."""
    speech = torch.zeros(2, 400)
    speech[0] = torch.randn(400)
    lengths = torch.tensor([400, 400])
    torch.manual_seed(0)
    out = UtteranceMixing(mix_prob=1.0).train()(speech, lengths)
    assert torch.isfinite(out).all()
    assert torch.equal(out, speech)
