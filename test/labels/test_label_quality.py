"""Purity and PNMI against a hand-computed example; utterance-level (word) references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from espnet2.bin.label_quality import main as quality_main
from espnet2.labels.quality import JointCounts, measure_quality, quality_from_counts

# ref a a a b b c  /  hyp 1 1 2 2 2 2  -> joint counts a:(2,1) b:(0,2) c:(0,1), N = 6
REF = {"u1": list("aaa"), "u2": list("bbc")}
HYP = [("u1", ["1", "1", "2"]), ("u2", ["2", "2", "2"])]


def test_hand_computed_example():
    rep = measure_quality(HYP, REF, ref_level="frame")
    assert rep["phone_purity"] == pytest.approx(4 / 6)  # (2 + 2) / 6
    assert rep["cluster_purity"] == pytest.approx(5 / 6)  # (2 + 2 + 1) / 6
    h_ref = -(0.5 * math.log(0.5) + math.log(1 / 3) / 3 + math.log(1 / 6) / 6)
    mi = math.log(2) / 3 + math.log(0.5) / 6 + math.log(1.5) / 3 + math.log(1.5) / 6
    assert rep["h_ref"] == pytest.approx(h_ref)
    assert rep["mi"] == pytest.approx(mi)
    assert rep["pnmi"] == pytest.approx(mi / h_ref)
    assert (rep["frames"], rep["utts"], rep["ref_classes"], rep["clusters_used"]) == (6, 2, 3, 2)


def test_perfect_and_independent_labels():
    ref = np.repeat(np.arange(4), 50)
    perfect = quality_from_counts(np.diag(np.bincount(ref)))
    assert perfect["phone_purity"] == perfect["cluster_purity"] == pytest.approx(1.0)
    assert perfect["pnmi"] == pytest.approx(1.0)
    independent = quality_from_counts(np.full((4, 5), 10))
    assert independent["pnmi"] == pytest.approx(0.0, abs=1e-12)
    assert independent["phone_purity"] == pytest.approx(0.25)


def test_utterance_level_reference_is_word_purity():
    ref = {"a": ["7"], "b": ["7"], "c": ["3"]}
    hyp = [("a", ["1", "1"]), ("b", ["1", "2"]), ("c", ["2", "2", "2"]), ("z", ["1"])]
    rep = measure_quality(hyp, ref)  # auto -> utt
    assert rep["ref_level"] == "utt" and rep["utts_without_reference"] == 1
    # frames: 7 -> 1,1,1,2 ; 3 -> 2,2,2 : cluster 1 pure (3), cluster 2 has 3 of 4 "3"
    assert rep["phone_purity"] == pytest.approx(6 / 7)
    assert rep["cluster_purity"] == pytest.approx(6 / 7)


def test_upsample_and_length_tolerance():
    ref = {"u": list("aabb"), "v": list("aa"), "w": list("ab" * 10)}
    hyp = [("u", ["1", "2"]), ("v", ["1"]), ("w", ["1"])]
    rep = measure_quality(hyp, ref, ref_level="frame", hyp_upsample=2, tolerance=1)
    assert rep["pnmi"] == pytest.approx(1.0) and rep["frames"] == 6
    assert rep["utts_length_mismatch"] == 1


def test_joint_counts_grow():
    j = JointCounts()
    j.add(["a"], ["x"])
    j.add(["b", "a"], ["y", "x"])
    np.testing.assert_array_equal(j.counts, [[2, 0], [0, 1]])
    with pytest.raises(ValueError):
        j.add(["a"], [])


def test_cli_writes_report(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("u1 1 1 2\nu2 2 2 2\n")
    ref = tmp_path / "ref.txt"
    ref.write_text("u1 a a a\nu2 b b c\n")
    out = tmp_path / "q.json"
    assert quality_main(["--labels", str(labels), "--ref_text", str(ref), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["phone_purity"] == pytest.approx(4 / 6)
    assert "phone purity 0.667" in capsys.readouterr().out
