from __future__ import annotations

import pytest

from espnet2.bin import data_dir as cli
from espnet2.data.errors import DataError
from espnet2.recipe import datadir


def lines(p):
    return p.read_text().splitlines()


def test_copy_with_prefixes_renames_every_file(small_dir, tmp_path):
    dst = tmp_path / "copy"
    datadir.copy_data_dir(small_dir, dst, utt_prefix="sp1.1-", spk_prefix="sp1.1-")
    assert [line.split()[0] for line in lines(dst / "wav.scp")] == [
        "sp1.1-a_1",
        "sp1.1-a_2",
        "sp1.1-b_1",
        "sp1.1-b_2",
    ]
    assert lines(dst / "utt2spk")[0] == "sp1.1-a_1 sp1.1-a"
    assert lines(dst / "spk2utt") == ["sp1.1-a sp1.1-a_1 sp1.1-a_2", "sp1.1-b sp1.1-b_1 sp1.1-b_2"]
    assert lines(dst / "text")[0] == "sp1.1-a_1 1"


def test_copy_with_segments_renames_recordings(tmp_path, small_dir):
    (small_dir / "segments").write_text("s1 a_1 0.0 0.05\ns2 b_2 0.1 0.2\n")
    (small_dir / "utt2spk").write_text("s1 a\ns2 b\n")
    (small_dir / "text").write_text("s1 x\ns2 y\n")
    dst = tmp_path / "c"
    datadir.copy_data_dir(small_dir, dst, utt_prefix="p-")
    assert lines(dst / "segments") == ["p-s1 p-a_1 0.0 0.05", "p-s2 p-b_2 0.1 0.2"]
    assert "p-a_1" in (dst / "wav.scp").read_text()


def test_fix_drops_incomplete_and_empty_text_and_sorts(small_dir):
    (small_dir / "text").write_text("b_2 2\na_1 1\na_2\n")  # b_1 missing, a_2 empty
    (small_dir / "utt2num_samples").write_text("a_1 1\na_2 2\nb_1 3\nb_2 4\nzz 5\n")
    assert datadir.fix_data_dir(small_dir) == 2
    assert [line.split()[0] for line in lines(small_dir / "wav.scp")] == ["a_1", "b_2"]
    assert lines(small_dir / "utt2num_samples") == ["a_1 1", "b_2 4"]
    assert lines(small_dir / "spk2utt") == ["a a_1", "b b_2"]


def test_duplicate_key_is_reported_with_line(small_dir):
    (small_dir / "utt2spk").write_text("a_1 a\na_1 b\n")
    with pytest.raises(DataError, match=r"utt2spk:2.*a_1.*duplicate"):
        datadir.read_kv(small_dir / "utt2spk")


def test_combine_and_duplicate_ids(small_dir, tmp_path):
    other = tmp_path / "o"
    datadir.copy_data_dir(small_dir, other, utt_prefix="x-", spk_prefix="x-")
    assert datadir.combine_data_dirs(tmp_path / "both", [small_dir, other]) == 8
    assert len(lines(tmp_path / "both" / "spk2utt")) == 4
    clash = tmp_path / "clash"
    datadir.copy_data_dir(small_dir, clash)
    (clash / "utt2spk").write_text("a_1 z\na_2 a\nb_1 b\nb_2 b\n")
    with pytest.raises(DataError, match="a_1"):
        datadir.combine_data_dirs(tmp_path / "bad", [small_dir, clash])


def test_split_covers_all_utts_once(small_dir):
    parts = datadir.split_data_dir(small_dir, 3)
    keys = [line.split()[0] for p in parts for line in lines(p / "wav.scp")]
    assert sorted(keys) == ["a_1", "a_2", "b_1", "b_2"] and len(set(keys)) == 4
    assert parts[0] == small_dir / "split3" / "1"
    with pytest.raises(ValueError, match="cannot split 4 utterances into 5"):
        datadir.split_data_dir(small_dir, 5)


def test_subset_variants(small_dir, tmp_path):
    assert datadir.subset_data_dir(small_dir, tmp_path / "n", num=2) == 2
    assert [x.split()[0] for x in lines(tmp_path / "n" / "wav.scp")] == ["a_1", "a_2"]
    (tmp_path / "spk").write_text("b\n")
    assert datadir.subset_data_dir(small_dir, tmp_path / "s", spk_list=tmp_path / "spk") == 2
    assert lines(tmp_path / "s" / "spk2utt") == ["b b_1 b_2"]
    (tmp_path / "u").write_text("b_2\na_1\n")
    datadir.subset_data_dir(small_dir, tmp_path / "u2", utt_list=tmp_path / "u")
    assert [x.split()[0] for x in lines(tmp_path / "u2" / "text")] == ["a_1", "b_2"]
    r1 = datadir.subset_data_dir(small_dir, tmp_path / "r1", num=3, shuffle=True, seed=1)
    assert r1 == 3


def test_cli_subcommands(small_dir, tmp_path):
    cli.main(["copy", "--utt_prefix", "p-", str(small_dir), str(tmp_path / "c")])
    cli.main(["combine", str(tmp_path / "m"), str(small_dir), str(tmp_path / "c")])
    cli.main(["split", str(tmp_path / "m"), "2"])
    cli.main(["subset", "--num", "1", str(tmp_path / "m"), str(tmp_path / "one")])
    cli.main(["fix", str(tmp_path / "one")])
    assert len(lines(tmp_path / "m" / "split2" / "2" / "wav.scp")) == 4
    assert len(lines(tmp_path / "one" / "wav.scp")) == 1
