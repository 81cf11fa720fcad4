"""--num_iters_per_epoch: training epochs are consecutive slices of the data-epoch stream."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from train_fakes import FakeLoader, TinyModel

from espnet2.train.epochs import epoch_segments, skip_batches
from espnet2.train.optim import build_optimizer
from espnet2.train.options import TrainerOptions
from espnet2.train.trainer import Trainer


def test_cap_below_data_epoch_walks_through_the_corpus():
    size = lambda r: 5  # noqa: E731
    assert epoch_segments(1, 2, size) == [(1, 0, 2)]
    assert epoch_segments(2, 2, size) == [(1, 2, 4)]
    assert epoch_segments(3, 2, size) == [(1, 4, 5), (2, 0, 1)]
    assert epoch_segments(6, 2, size) == [(3, 0, 2)]


def test_cap_above_data_epoch_spans_several():
    size = lambda r: 3  # noqa: E731
    assert epoch_segments(1, 7, size) == [(1, 0, 3), (2, 0, 3), (3, 0, 1)]
    assert epoch_segments(2, 7, size) == [(3, 1, 3), (4, 0, 3), (5, 0, 2)]


@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), cap=st.integers(1, 9),
       epochs=st.integers(1, 6))
def test_epochs_concatenate_to_the_stream(sizes, cap, epochs):
    def size(r):
        return sizes[(r - 1) % len(sizes)]

    got = [(r, i) for e in range(1, epochs + 1)
           for r, a, b in epoch_segments(e, cap, size) for i in range(a, b)]
    stream = [(r, i) for r in range(1, 100) for i in range(size(r))]
    assert got == stream[: cap * epochs]


def test_skip_batches_and_bad_input():
    segs = [(1, 4, 5), (2, 0, 3)]
    assert skip_batches(segs, 0) == segs
    assert skip_batches(segs, 1) == [(2, 0, 3)]
    assert skip_batches(segs, 2) == [(2, 1, 3)]
    with pytest.raises(ValueError, match="num_iters_per_epoch"):
        epoch_segments(1, 0, lambda r: 3)
    with pytest.raises(ValueError, match="data epoch 1 has no batches"):
        epoch_segments(1, 2, lambda r: 0)


class RecordingLoader(FakeLoader):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def iterate(self, epoch, start_batch=0):
        for b in super().iterate(epoch, start_batch):
            self.seen.append(b["utt_id"][0].split("u")[0])
            yield b


def _trainer(tmp_path, loader, **opts):
    torch.manual_seed(0)
    model = TinyModel()
    opt = build_optimizer("adamw", model.parameters(), {"lr": 1e-2})
    options = TrainerOptions(output_dir=tmp_path, use_tensorboard=False, use_matplotlib=False,
                             **opts)
    return Trainer(model, opt, None, loader, None, options), model


def test_trainer_carries_the_rest_of_a_data_epoch(tmp_path):
    loader = RecordingLoader(5)
    trainer, _ = _trainer(tmp_path, loader, max_epoch=3, num_iters_per_epoch=2)
    trainer.run()
    assert loader.seen == ["e1b0", "e1b1", "e1b2", "e1b3", "e1b4", "e2b0"]
    assert trainer.step == 6


def test_resume_inside_a_carried_epoch_matches_uninterrupted(tmp_path):
    full_loader = RecordingLoader(5)
    full, m_full = _trainer(tmp_path / "full", full_loader, max_epoch=4, num_iters_per_epoch=3)
    full.run()
    part, _ = _trainer(tmp_path / "cut", RecordingLoader(5), max_epoch=2,
                       num_iters_per_epoch=3)
    part.run()
    rest_loader = RecordingLoader(5)
    rest, m_rest = _trainer(tmp_path / "cut", rest_loader, max_epoch=4, num_iters_per_epoch=3,
                            resume=True)
    rest.run()
    assert rest_loader.seen == full_loader.seen[6:] == ["e2b1", "e2b2", "e2b3", "e2b4",
                                                        "e3b0", "e3b1"]
    assert m_rest.losses == m_full.losses[6:]


def test_resume_mid_epoch_across_a_data_epoch_boundary(tmp_path):
    from train_fakes import Interrupted

    kw = {"max_epoch": 3, "num_iters_per_epoch": 3, "save_every_n_steps": 1}
    full_loader = RecordingLoader(5)
    full, m_full = _trainer(tmp_path / "full", full_loader, **kw)
    full.run()
    # training epoch 2 = data epoch 1 batches 3-4, then data epoch 2 batch 0: killed there
    cut, _ = _trainer(tmp_path / "cut", RecordingLoader(5, crash_at=(2, 0)), **kw)
    with pytest.raises(Interrupted):
        cut.run()
    rest_loader = RecordingLoader(5)
    rest, m_rest = _trainer(tmp_path / "cut", rest_loader, resume=True, **kw)
    rest.run()
    assert rest_loader.seen == full_loader.seen[5:] == ["e2b0", "e2b1", "e2b2", "e2b3"]
    assert m_rest.losses == m_full.losses[5:]
