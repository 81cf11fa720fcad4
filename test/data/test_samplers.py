import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2.data.errors import DataError
from espnet2.data.kaldi import read_kv, write_kv
from espnet2.data.samplers import (
    build_batches,
    even_out,
    padding_fraction,
    shard_batch,
    shuffle_batches,
    split_scps,
)

lengths_st = st.dictionaries(
    st.text("abcdefgh0123", min_size=1, max_size=6), st.integers(1, 1000), min_size=1, max_size=60
)


def _flat(batches):
    return [u for b in batches for u in b]


@settings(max_examples=150, deadline=None)
@given(lengths_st, st.integers(4000, 9000), st.integers(1, 4))
def test_numel_inequality_and_coverage(lengths, bins, min_bs):
    batches = build_batches("numel", lengths, batch_bins=bins, min_batch_size=min_bs)
    flat = _flat(batches)
    assert len(flat) <= len(lengths) and len(set(flat)) == len(flat)
    for b in batches:
        assert len(b) * max(lengths[u] for u in b) <= bins
        assert len(b) >= min_bs or len(batches) == 1
    if min_bs == 1:
        assert Counter(flat) == Counter(list(lengths))  # nothing dropped
    # sort_in_batch descending, sort_batch ascending
    for b in batches:
        ls = [lengths[u] for u in b]
        assert ls == sorted(ls, reverse=True)
    maxes = [lengths[b[0]] for b in batches]
    assert maxes == sorted(maxes)


@settings(max_examples=100, deadline=None)
@given(lengths_st, st.integers(1000, 5000))
def test_length_type(lengths, bins):
    batches = build_batches("length", lengths, batch_bins=bins)
    assert Counter(_flat(batches)) == Counter(list(lengths))
    for b in batches:
        assert sum(lengths[u] for u in b) <= bins


def test_numel_is_greedy():
    lengths = {f"u{i}": n for i, n in enumerate([10, 10, 10, 20, 20, 40])}
    batches = build_batches("numel", lengths, batch_bins=60)
    # ascending: [10,10,10,20] would be 4*20=80>60 -> close at 3; [20,20] 40; +40 -> 3*40>60
    assert [[lengths[u] for u in b] for b in batches] == [[10, 10, 10], [20, 20], [40]]


def test_last_batch_topped_up_to_min_batch_size():
    lengths = {f"u{i}": n for i, n in enumerate([10, 10, 10, 10, 30])}
    batches = build_batches("numel", lengths, batch_bins=60, min_batch_size=2)
    assert sorted(len(b) for b in batches) == [2, 3]
    assert Counter(_flat(batches)) == Counter(list(lengths))
    for b in batches:
        assert len(b) * max(lengths[u] for u in b) <= 60


def test_unsorted_and_sorted():
    lengths = {"c": 3, "a": 1, "b": 2, "e": 5, "d": 4}
    assert build_batches("unsorted", lengths, batch_size=2) == [["c", "a"], ["b", "e"], ["d"]]
    assert build_batches("unsorted", lengths, batch_size=2, drop_last=True) == [["c", "a"],
                                                                                ["b", "e"]]
    assert build_batches("sorted", lengths, batch_size=2) == [["b", "a"], ["d", "c"], ["e"]]
    assert build_batches("sorted", lengths, batch_size=2, sort_in_batch="ascending",
                         sort_batch="descending") == [["e"], ["c", "d"], ["a", "b"]]
    # a last batch below min_batch_size is spread over the others (ESPnet)
    b = build_batches("unsorted", lengths, batch_size=2, min_batch_size=2)
    assert [len(x) for x in b] == [2, 3] and Counter(_flat(b)) == Counter(list(lengths))


def test_bins_too_small_names_utterance():
    with pytest.raises(DataError) as ei:
        build_batches("numel", {"a": 10, "big": 500}, batch_bins=100)
    s = str(ei.value)
    assert "utt 'big'" in s and "length 500" in s and "batch_bins=100" in s
    assert "raise batch_bins" in s
    with pytest.raises(DataError, match="utt 'a'"):
        build_batches("numel", {"a": 60}, batch_bins=100, min_batch_size=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_type"):
        build_batches("folded", {"a": 1}, batch_size=1)
    with pytest.raises(ValueError, match="batch_bins"):
        build_batches("numel", {"a": 1})
    with pytest.raises(ValueError, match="batch_size"):
        build_batches("sorted", {"a": 1})


def test_shuffle_deterministic():
    batches = [[str(i)] for i in range(50)]
    a = shuffle_batches(batches, seed=3, epoch=1)
    assert a == shuffle_batches(batches, seed=3, epoch=1)
    assert a != shuffle_batches(batches, seed=3, epoch=2)
    assert sorted(a) == sorted(batches)
    assert a == shuffle_batches(batches, seed=2, epoch=2)  # ESPnet: seed + epoch


@given(st.lists(st.text("xyz", min_size=1), min_size=1, max_size=20, unique=True),
       st.integers(1, 8))
def test_shard_batch_covers(batch, world):
    shares = [shard_batch(batch, r, world) for r in range(world)]
    assert all(len(s) >= 1 for s in shares)
    if len(batch) >= world:
        assert sorted(_flat(shares)) == sorted(batch)
    else:
        assert set(_flat(shares)) == set(batch)


def test_even_out():
    batches = [["a", "b", "c"], ["d"], ["e", "f"], ["g"]]
    out = even_out(batches, 2)
    assert all(len(b) >= 2 for b in out)
    assert _flat(out) == list("abcdefg")
    assert even_out([["a"]], 3) == [["a", "a", "a"]]
    assert even_out(batches, 1) == batches


def test_padding_fraction():
    lengths = {"a": 10, "b": 5, "c": 8}
    assert padding_fraction([["a", "b"], ["c"]], lengths) == pytest.approx(1 - 23 / 28)
    assert padding_fraction([["a"]], lengths) == 0.0


def test_split_scps(tmp_path):
    keys = [f"u{i:02d}" for i in range(10)]
    write_kv(tmp_path / "wav.scp", {k: f"/x/{k}.wav" for k in reversed(keys)})
    (tmp_path / "text").write_text("".join(f"{k} 1 2\n" if k != "u03" else f"{k}\n"
                                           for k in keys))
    write_kv(tmp_path / "speech_shape", {k: "100" for k in keys})
    files = [tmp_path / "wav.scp", tmp_path / "text", tmp_path / "speech_shape"]
    dirs = split_scps(files, 3, tmp_path / "splits")
    assert (tmp_path / "splits" / "num_splits").read_text() == "3\n"
    seen = []
    for i, d in enumerate(dirs):
        assert d.endswith(f"split.{i}")
        parts = [read_kv(os.path.join(d, f.name), allow_empty_value=True) for f in files]
        assert list(parts[0]) == list(parts[1]) == list(parts[2]) == keys[i::3]
        assert all(parts[0][k] == f"/x/{k}.wav" for k in parts[0])
        seen += list(parts[0])
    assert sorted(seen) == keys
    assert read_kv(os.path.join(dirs[0], "text"), allow_empty_value=True)["u03"] == ""


def test_split_scps_disagreeing_keys(tmp_path):
    write_kv(tmp_path / "wav.scp", {"a": "1", "b": "2"})
    write_kv(tmp_path / "text", {"a": "1"})
    with pytest.raises(DataError, match="missing from"):
        split_scps([tmp_path / "wav.scp", tmp_path / "text"], 2, tmp_path / "out")
    assert not (tmp_path / "out").exists()
