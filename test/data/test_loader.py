import numpy as np
import pytest
import soundfile
import torch

from espnet2.data.collate import SSLCollate
from espnet2.data.dataset import SSLDataset
from espnet2.data.errors import DataError
from espnet2.data.frames import FrameGeometry
from espnet2.data.kaldi import write_kv, write_shape, write_text
from espnet2.data.loader import EpochLoader
from espnet2.data.samplers import build_batches, even_out, shuffle_batches

GEOM = FrameGeometry(40, 20, 0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    wav, text, shape = {}, {}, {}
    for i in range(12):
        n = int(rng.integers(200, 600))
        soundfile.write(d / f"u{i:02d}.wav", rng.integers(-999, 999, n, dtype=np.int16), 8000)
        wav[f"u{i:02d}"] = str(d / f"u{i:02d}.wav")
        text[f"u{i:02d}"] = [str(x % 5) for x in range(GEOM.num_frames(n))]
        shape[f"u{i:02d}"] = n
    write_kv(d / "wav.scp", wav)
    write_text(d / "text", text)
    write_shape(d / "speech_shape", shape)
    ds = SSLDataset(str(d / "wav.scp"), str(d / "text"), [str(i) for i in range(5)], fs=8000)
    batches = build_batches("numel", shape, batch_bins=1800)
    return ds, batches, shape


def _run(loader, epoch, start=0):
    return [(b["utt_id"], b["speech"], b["text"]) for b in loader.iterate(epoch, start)]


def _same(a, b):
    assert len(a) == len(b)
    for (u1, s1, t1), (u2, s2, t2) in zip(a, b):
        assert u1 == u2 and torch.equal(s1, s2) and torch.equal(t1, t2)


def test_workers_give_same_batches_and_resume(corpus):
    ds, batches, _ = corpus
    l0 = EpochLoader(ds, batches, SSLCollate(GEOM, crop_seed=3), seed=7, num_workers=0)
    l2 = EpochLoader(ds, batches, SSLCollate(GEOM, crop_seed=3), seed=7, num_workers=2)
    e1 = _run(l0, 1)
    assert len(e1) == l0.num_batches(1) == len(batches) > 2
    _same(e1, _run(l2, 1))
    _same(e1[2:], _run(l0, 1, start=2))  # resume mid-epoch: same remaining batches and crops
    _same(e1[3:], _run(l2, 1, start=3))
    e2 = _run(l0, 2)
    assert [u for u, _, _ in e2] != [u for u, _, _ in e1]  # reshuffled
    assert sorted(u for b in e2 for u in b[0]) == sorted(ds.keys())


def test_ranks_cover_each_batch(corpus):
    ds, batches, _ = corpus
    loaders = [EpochLoader(ds, batches, SSLCollate(GEOM, pad=True), rank=r, world_size=3,
                           seed=1) for r in range(3)]
    counts = {lo.num_batches(0) for lo in loaders}
    assert len(counts) == 1
    per_rank = [[b["utt_id"] for b in lo.iterate(0)] for lo in loaders]
    assert len({len(p) for p in per_rank}) == 1
    global_batches = shuffle_batches(even_out(batches, 3), seed=1, epoch=0)
    for step, shares in enumerate(zip(*per_rank)):
        assert all(len(s) >= 1 for s in shares)
        assert sorted(u for s in shares for u in s) == sorted(global_batches[step])
    assert loaders[1].rank_batches(0) == per_rank[1]


class _Boom:
    """A dataset that fails on one utterance and records the worker's torch threads."""

    def __init__(self, ds):
        self.ds = ds

    def __getitem__(self, utt):
        if utt == "u05":
            raise ValueError("corrupt bytes")
        item = dict(self.ds[utt])
        item["speech"] = item["speech"] * 0 + torch.get_num_threads()
        return item

    def __len__(self):
        return len(self.ds)


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_crash_names_utterance(corpus, workers):
    ds, batches, _ = corpus
    loader = EpochLoader(_Boom(ds), batches, SSLCollate(GEOM, pad=True), num_workers=workers)
    with pytest.raises(DataError) as ei:
        for b in loader.iterate(0):
            if "u05" not in b["utt_id"] and workers:
                assert torch.all(b["speech"][:, 0] == 1)  # workers use 1 torch thread
    assert "u05" in str(ei.value) and "corrupt bytes" in str(ei.value)


def test_no_shuffle_keeps_order(corpus):
    ds, batches, _ = corpus
    loader = EpochLoader(ds, batches, SSLCollate(GEOM, pad=True), shuffle=False)
    assert [b["utt_id"] for b in loader.iterate(5)] == batches
    with pytest.raises(ValueError):
        list(loader.iterate(0, start_batch=len(batches) + 1))
    assert list(loader.iterate(0, start_batch=len(batches))) == []
