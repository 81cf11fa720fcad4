from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from espnet2.bin import fsdd_data
from espnet2.recipe import fsdd


@pytest.fixture
def fake_fsdd(tmp_path):
    """recordings/{digit}_{speaker}_{take}.wav for 3 speakers x 2 digits x 4 takes, no tsv."""
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for spk in ("ann", "bob", "cy"):
        for digit in (0, 1):
            for take in range(4):
                sf.write(
                    root / "recordings" / f"{digit}_{spk}_{take}.wav",
                    np.zeros(400, np.float32),
                    8000,
                )
    return root


def test_list_from_file_names(fake_fsdd):
    recs = fsdd.list_recordings(fake_fsdd)
    assert len(recs) == 24 and recs[0].utt == "ann_0_00" and recs[0].take == 0
    (fake_fsdd / "recordings" / "junk.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="junk.wav"):
        fsdd.list_recordings(fake_fsdd)


def test_speaker_disjoint_split_and_subset(fake_fsdd):
    recs = fsdd.list_recordings(fake_fsdd)
    sets = fsdd.split_sets(recs, test_speakers=("cy",), valid_takes=1)
    spk = {k: {r.speaker for r in v} for k, v in sets.items()}
    assert spk["test"] == {"cy"} and spk["train"] == spk["valid"] == {"ann", "bob"}
    assert len(sets["valid"]) == 4 and len(sets["train"]) == 12 and len(sets["test"]) == 8
    small = fsdd.split_sets(recs, test_speakers=("cy",), subset=2)
    assert {r.take for v in small.values() for r in v} == {0, 1}
    with pytest.raises(ValueError, match="proper subset"):
        fsdd.split_sets(recs, test_speakers=("zed",))


def test_cli_writes_kaldi_dirs_with_digit_text(fake_fsdd, tmp_path):
    out = tmp_path / "data"
    fsdd_data.main(
        [
            "--fsdd_root",
            str(fake_fsdd),
            "--test_speakers",
            "cy",
            "--valid_takes",
            "1",
            "--data_dir",
            str(out),
        ]
    )
    text = dict(line.split() for line in (out / "train" / "text").read_text().splitlines())
    assert text["ann_1_03"] == "1"
    assert (out / "test" / "spk2utt").read_text().startswith("cy cy_0_00 ")
    wav = (out / "valid" / "wav.scp").read_text().splitlines()[0].split()
    assert wav[0] == "ann_0_00" and wav[1].endswith("recordings/0_ann_0.wav")


def test_shared_copy_uses_tsv(fsdd_root):
    recs = fsdd.list_recordings(fsdd_root)
    sets = fsdd.split_sets(recs)
    assert len(recs) == 3000
    assert {r.speaker for r in sets["test"]} == set(fsdd.TEST_SPEAKERS)
    assert len(sets["train"]) == 4 * 10 * 45 and len(sets["valid"]) == 4 * 10 * 5
