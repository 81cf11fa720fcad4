import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2.data.collate import SSLCollate
from espnet2.data.errors import DataError
from espnet2.data.frames import FrameGeometry

geometries = st.builds(
    FrameGeometry, st.integers(1, 40), st.integers(1, 16), st.integers(0, 8)
).filter(lambda g: g.pad < g.receptive_field)


def _items(lengths, geom, delta=None, down=1):
    """Speech = sample index, labels = frame index (so alignment can be checked exactly)."""
    items = []
    for i, n in enumerate(lengths):
        nf = geom.num_frames(n) + (0 if delta is None else delta[i])
        labels = np.repeat(np.arange(max(nf, 0)), down)
        items.append((f"u{i}", {"speech": np.arange(n, dtype=np.float32),
                                "text": labels.astype(np.int64)}))
    return items


def _expected_labels(k, frames, num_labels):
    """Label of crop frame i is full-utterance frame k + i, or -1 past the label end."""
    idx = k + np.arange(frames)
    return np.where(idx < num_labels, idx, -1)


@settings(max_examples=200, deadline=None)
@given(geometries, st.lists(st.integers(1, 400), min_size=1, max_size=4),
       st.integers(0, 5), st.integers(1, 3), st.lists(st.integers(-2, 2), min_size=4, max_size=4))
def test_crop_alignment(geom, lengths, seed, down, delta):
    coll = SSLCollate(geom, pad=False, rand_crop=True, label_downsampling=down, crop_seed=seed)
    batch = coll(_items(lengths, geom, delta, down))
    m = min(lengths)
    frames = geom.num_frames(m)
    assert batch["speech"].shape == (len(lengths), m)
    assert batch["speech_lengths"].tolist() == [m] * len(lengths)
    assert batch["text"].shape == (len(lengths), frames)
    assert batch["text_lengths"].tolist() == [frames] * len(lengths)
    for b, n in enumerate(lengths):
        offset = int(batch["speech"][b, 0]) if m > 0 else 0
        assert offset % geom.stride == 0 and offset + m <= n
        np.testing.assert_array_equal(batch["speech"][b].numpy(), offset + np.arange(m))
        num_labels = max(geom.num_frames(n) + delta[b], 0)
        np.testing.assert_array_equal(
            batch["text"][b].numpy(), _expected_labels(offset // geom.stride, frames, num_labels)
        )


@settings(max_examples=100, deadline=None)
@given(geometries, st.lists(st.integers(1, 400), min_size=1, max_size=4),
       st.lists(st.integers(-2, 2), min_size=4, max_size=4))
def test_pad_alignment(geom, lengths, delta):
    batch = SSLCollate(geom, pad=True)(_items(lengths, geom, delta))
    frames = [geom.num_frames(n) for n in lengths]
    assert batch["speech"].shape == (len(lengths), max(lengths))
    assert batch["speech_lengths"].tolist() == lengths
    assert batch["text"].shape == (len(lengths), max(frames))
    assert batch["text_lengths"].tolist() == frames
    for b, n in enumerate(lengths):
        assert torch.all(batch["speech"][b, n:] == 0)
        np.testing.assert_array_equal(batch["speech"][b, :n].numpy(), np.arange(n))
        want = _expected_labels(0, frames[b], max(frames[b] + delta[b], 0))
        np.testing.assert_array_equal(batch["text"][b, : frames[b]].numpy(), want)
        assert torch.all(batch["text"][b, frames[b]:] == -1)


def test_wav2vec_example_and_determinism():
    geom = FrameGeometry(400, 320, 0)
    items = _items([16000, 20000, 32000], geom)
    a = SSLCollate(geom, crop_seed=1)
    b = pickle.loads(pickle.dumps(SSLCollate(geom, crop_seed=1)))  # as a worker gets it
    out1, out2 = a(items), b(items)
    assert torch.equal(out1["speech"], out2["speech"]) and torch.equal(out1["text"], out2["text"])
    assert out1["text"].shape == (3, 49) and out1["utt_id"] == ["u0", "u1", "u2"]
    offsets = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        offsets.add(int(a(items)["speech"][2, 0]))
    assert len(offsets) > 1  # crops move between epochs
    fixed = SSLCollate(geom, rand_crop=False)(items)
    assert fixed["speech"][:, 0].tolist() == [0, 0, 0]


def test_no_text():
    geom = FrameGeometry(400, 320, 0)
    batch = SSLCollate(geom)([("a", {"speech": np.zeros(500, np.float32)}),
                              ("b", {"speech": np.ones(900, np.float32)})])
    assert set(batch) == {"utt_id", "speech", "speech_lengths"}
    assert batch["speech"].dtype == torch.float32 and batch["speech_lengths"].dtype == torch.long


def test_label_rate_mismatch_names_utt():
    geom = FrameGeometry(400, 320, 0)
    items = [("u1", {"speech": np.zeros(16000, np.float32), "text": np.zeros(99, np.int64)})]
    with pytest.raises(DataError) as ei:
        SSLCollate(geom)(items)
    s = str(ei.value)
    assert "utt 'u1'" in s and "99 labels" in s and "49 frames" in s
    assert "label_downsampling" in s
    out = SSLCollate(geom, label_downsampling=2)(items)  # 100 Hz -> 50 Hz fixes it
    assert out["text"].shape == (1, 49)


def test_mixed_text_error():
    geom = FrameGeometry(400, 320, 0)
    items = [("a", {"speech": np.zeros(500, np.float32), "text": np.zeros(1, np.int64)}),
             ("b", {"speech": np.zeros(500, np.float32)})]
    with pytest.raises(DataError, match="utt 'b'"):
        SSLCollate(geom)(items)
