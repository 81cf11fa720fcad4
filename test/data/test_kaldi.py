import pickle

import pytest

from espnet2.data.errors import DataError, Problem
from espnet2.data.kaldi import (
    Segment,
    check_audio_files_exist,
    check_same_utts,
    is_pipe,
    read_kv,
    read_lengths,
    read_segments,
    read_shape,
    read_spk2utt,
    read_text,
    read_token_list,
    read_utt2num_samples,
    read_utt2spk,
    read_wav_scp,
    utt2spk_to_spk2utt,
    write_kv,
    write_segments,
    write_shape,
    write_spk2utt,
    write_text,
    write_token_list,
    write_utt2num_samples,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_problem_and_error_text():
    p = Problem("d/wav.scp", 3, "u1", "bad", "is wrong", "fix it")
    err = DataError([p, Problem("d/text", None, None, None, "second", "")])
    s = str(err)
    assert "2 data problems" in s
    assert "d/wav.scp:3: utt 'u1': is wrong (value: 'bad'). Fix: fix it" in s
    assert "d/text: second" in s
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == s and again.problems == err.problems
    assert str(DataError("plain")) == "plain"


def test_kv_round_trip_keeps_order(tmp_path):
    m = {"u3": "/a b/c.wav", "u1": "sox x.wav -t wav - |", "u2": "y.flac"}
    write_kv(tmp_path / "wav.scp", m)
    got = read_wav_scp(tmp_path / "wav.scp")
    assert got == m and list(got) == ["u3", "u1", "u2"]
    assert is_pipe(got["u1"]) and not is_pipe(got["u2"])


def test_kv_tabs_and_trailing_whitespace(tmp_path):
    p = _write(tmp_path / "f", "a\t1 \nb   two words  \n")
    assert read_kv(p) == {"a": "1", "b": "two words"}


def test_duplicates_and_malformed_all_reported(tmp_path):
    p = _write(tmp_path / "wav.scp", "u1 a.wav\nu2\n\nu1 b.wav\nu3 c.wav\n")
    with pytest.raises(DataError) as ei:
        read_kv(p)
    err = ei.value
    assert len(err.problems) == 3
    s = str(err)
    assert f"{p}:2: utt 'u2'" in s and "no value" in s
    assert f"{p}:3" in s and "blank line" in s
    assert f"{p}:4: utt 'u1'" in s and "duplicate" in s and "first seen on line 1" in s
    assert "'u1 b.wav'" in s  # the offending line
    assert "Fix:" in s


def test_empty_value_allowed_when_asked(tmp_path):
    p = _write(tmp_path / "text", "u1 a b\nu2\n")
    assert read_kv(p, allow_empty_value=True) == {"u1": "a b", "u2": ""}
    assert read_text(p) == {"u1": ["a", "b"], "u2": []}


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_kv(tmp_path / "nope")


def test_text_round_trip(tmp_path):
    t = {"u1": ["12", "7", "7"], "u2": [], "u3": ["a"]}
    write_text(tmp_path / "text", t)
    assert read_text(tmp_path / "text") == t


def test_segments_round_trip_and_validation(tmp_path):
    segs = {"s1": Segment("r1", 0.0, 1.5), "s2": Segment("r1", 1.5, 3.25)}
    write_segments(tmp_path / "segments", segs)
    assert read_segments(tmp_path / "segments") == segs
    p = _write(tmp_path / "bad", "s1 r1 2.0 1.0\ns2 r1 x 1\ns3 r1 0\ns4 r1 0 1\n")
    with pytest.raises(DataError) as ei:
        read_segments(p)
    s = str(ei.value)
    assert len(ei.value.problems) == 3
    assert f"{p}:1: utt 's1'" in s and "start < end" in s
    assert f"{p}:2: utt 's2'" in s and "numbers" in s
    assert f"{p}:3: utt 's3'" in s


def test_utt2spk_spk2utt(tmp_path):
    u2s = {"a1": "A", "b1": "B", "a2": "A"}
    write_kv(tmp_path / "utt2spk", u2s)
    assert read_utt2spk(tmp_path / "utt2spk") == u2s
    s2u = utt2spk_to_spk2utt(u2s)
    assert s2u == {"A": ["a1", "a2"], "B": ["b1"]}
    write_spk2utt(tmp_path / "spk2utt", s2u)
    assert read_spk2utt(tmp_path / "spk2utt") == s2u
    _write(tmp_path / "bad", "a1 A extra\n")
    with pytest.raises(DataError, match="exactly one field"):
        read_utt2spk(tmp_path / "bad")


def test_shape_round_trip(tmp_path):
    write_shape(tmp_path / "speech_shape", {"u1": 16000, "u2": (733, 502)})
    assert (tmp_path / "speech_shape").read_text() == "u1 16000\nu2 733,502\n"
    assert read_shape(tmp_path / "speech_shape") == {"u1": (16000,), "u2": (733, 502)}
    assert read_lengths(tmp_path / "speech_shape") == {"u1": 16000, "u2": 733}
    p = _write(tmp_path / "bad", "u1 12.5\nu2 -3\nu3 4,x\n")
    with pytest.raises(DataError) as ei:
        read_shape(p)
    assert [pr.line for pr in ei.value.problems] == [1, 2, 3]
    assert "'u1 12.5'" in str(ei.value)


def test_utt2num_samples(tmp_path):
    write_utt2num_samples(tmp_path / "u", {"a": 5, "b": 7})
    assert read_utt2num_samples(tmp_path / "u") == {"a": 5, "b": 7}
    _write(tmp_path / "bad", "a 5,2\n")
    with pytest.raises(DataError, match="one integer"):
        read_utt2num_samples(tmp_path / "bad")


def test_write_rejects_bad_keys(tmp_path):
    with pytest.raises(DataError, match="whitespace"):
        write_kv(tmp_path / "x", {"a b": "1"})
    with pytest.raises(DataError, match="newline"):
        write_kv(tmp_path / "x", {"a": "1\n2"})
    assert not (tmp_path / "x").exists()


def test_token_list(tmp_path):
    toks = [str(i) for i in range(5)] + ["<unk>"]
    write_token_list(tmp_path / "tokens.txt", toks)
    assert read_token_list(tmp_path / "tokens.txt") == toks


def test_token_list_hubert1_literal_backslash_n(tmp_path):
    p = _write(tmp_path / "tokens.txt", "0\n1\n2\n<sos/eos>\\n<unk>\n")
    assert read_token_list(p) == ["0", "1", "2", "<sos/eos>", "<unk>"]


def test_token_list_errors(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_token_list(_write(tmp_path / "empty", ""))
    p = _write(tmp_path / "bad", "a\n\nb\na\n")
    with pytest.raises(DataError) as ei:
        read_token_list(p)
    s = str(ei.value)
    assert f"{p}:2" in s and "blank" in s
    assert f"{p}:4" in s and "duplicate token (first on line 1)" in s
    with pytest.raises(DataError):
        write_token_list(tmp_path / "t", ["a", "a"])


def test_check_same_utts():
    check_same_utts({"wav.scp": ["a", "b"], "text": ["b", "a"]})
    with pytest.raises(DataError) as ei:
        check_same_utts({"wav.scp": list("abcd"), "text": ["a", "x"], "shape": list("abcd")})
    err = ei.value
    assert len(err.problems) == 1
    s = str(err)
    assert "text" in s and "3 in wav.scp but missing from text" in s
    assert "['b', 'c', 'd']" in s and "1 in text but not in wav.scp" in s and "['x']" in s
    assert "fix_data_dir" in s


def test_check_audio_files_exist(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    scp = _write(tmp_path / "wav.scp", f"a {tmp_path}/a.wav\nb {tmp_path}/b.wav\n"
                 f"c cat {tmp_path}/zzz.wav |\nd {tmp_path}/d.wav\n")
    with pytest.raises(DataError) as ei:
        check_audio_files_exist(scp)
    probs = ei.value.problems
    assert [(p.line, p.utt) for p in probs] == [(2, "b"), (4, "d")]
    assert f"{tmp_path}/b.wav" in str(ei.value)
    _write(scp, f"a {tmp_path}/a.wav\nc cat nothing |\n")
    assert check_audio_files_exist(scp) == 1
    # Kaldi archive entries: the archive must exist (offsets are not read here)
    (tmp_path / "data.ark").write_bytes(b"")
    _write(scp, f"a {tmp_path}/data.ark:9\nb {tmp_path}/gone.ark:9\n")
    with pytest.raises(DataError) as ei:
        check_audio_files_exist(scp)
    assert [(p.line, p.utt) for p in ei.value.problems] == [(2, "b")]
