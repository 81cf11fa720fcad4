from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from espnet2.bin import filter_data_dir as filter_cli
from espnet2.bin import format_wav_scp
from espnet2.data.errors import DataError
from espnet2.recipe import format as fmt
from espnet2.recipe.filter import filter_data_dir


def kv(p):
    return dict(line.split(" ", 1) for line in p.read_text().splitlines())


def test_parse_fs():
    assert fmt.parse_fs("16k") == 16000 and fmt.parse_fs(8000) == 8000


def test_resample_8k_to_16k_doubles_length_and_keeps_a_tone():
    t = np.arange(8000) / 8000
    wav = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = fmt.resample(wav, 8000, 16000)
    assert len(out) == 16000
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) * 16000 / len(out) - 440) < 2  # same pitch at the new rate


def test_format_resolves_pipes_and_segments(small_dir, tmp_path):
    wav = kv(small_dir / "wav.scp")
    # a pipe for one recording, a plain path for the others
    wav["a_2"] = f"cat {wav['a_2']} |"
    (small_dir / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wav.items())))
    keys = sorted(wav)
    lengths = fmt.format_utts(small_dir, keys, tmp_path / "out", 16000, "flac")
    assert lengths == {"a_1": 1600, "a_2": 3200, "b_1": 4800, "b_2": 6400}
    scp = kv(tmp_path / "out" / "wav.scp")
    data, fs = sf.read(scp["a_2"])
    assert fs == 16000 and len(data) == 3200 and scp["a_2"].endswith(".flac")
    # segments: two pieces of b_2 (0.4 s at 8 kHz)
    (small_dir / "segments").write_text("s1 b_2 0.0 0.1\ns2 b_2 0.1 -1\n")
    got = fmt.format_utts(small_dir, ["s1", "s2"], tmp_path / "seg", 16000, "wav")
    assert got == {"s1": 1600, "s2": 4800}


def test_format_reports_every_bad_entry(small_dir, tmp_path):
    (small_dir / "wav.scp").write_text("a_1 /nonexistent.wav\na_2 false |\nb_1 x\nb_2 y\n")
    with pytest.raises(DataError) as e:
        fmt.format_utts(small_dir, ["a_1", "a_2"], tmp_path / "o", 16000, "flac")
    text = str(e.value)
    assert "a_1" in text and "/nonexistent.wav" in text and "a_2" in text and "wav.scp" in text


def test_format_cli_parallel_jobs(small_dir, tmp_path):
    dst = tmp_path / "org"
    assert format_wav_scp.main(["--nj", "3", "--fs", "16k", str(small_dir), str(dst)]) == 0
    assert sorted(kv(dst / "utt2num_samples").items()) == [
        ("a_1", "1600"),
        ("a_2", "3200"),
        ("b_1", "4800"),
        ("b_2", "6400"),
    ]
    assert (dst / "feats_type").read_text() == "raw\n"
    assert (dst / "text").is_file() and (dst / "spk2utt").is_file()
    assert len(list((dst / "logdir").glob("format.*.log"))) == 3


def _org(tmp_path, small_dir, text=True):
    dst = tmp_path / "org"
    format_wav_scp.main(["--nj", "1", "--fs", "8k", str(small_dir), str(dst)])
    if not text:
        (dst / "text").unlink()
    return dst


def test_filter_is_strict_and_text_optional(small_dir, tmp_path):
    org = _org(tmp_path, small_dir, text=False)
    # 800, 1600, 2400, 3200 samples at 8 kHz = 0.1, 0.2, 0.3, 0.4 s; bounds are strict
    kept, total = filter_data_dir(org, tmp_path / "f", 8000, 0.1, 0.4)
    assert (kept, total) == (2, 4)
    assert sorted(kv(tmp_path / "f" / "wav.scp")) == ["a_2", "b_1"]
    assert not (tmp_path / "f" / "text").exists()
    assert (tmp_path / "f" / "spk2utt").read_text() == "a a_2\nb b_1\n"


def test_filter_drops_empty_text_and_errors_when_nothing_left(small_dir, tmp_path):
    org = _org(tmp_path, small_dir)
    (org / "text").write_text("a_1 1\na_2\nb_1 3\nb_2 4\n")
    filter_cli.main(
        [
            "--fs",
            "8k",
            "--min_wav_duration",
            "0",
            "--max_wav_duration",
            "1",
            str(org),
            str(tmp_path / "f"),
        ]
    )
    assert sorted(kv(tmp_path / "f" / "wav.scp")) == ["a_1", "b_1", "b_2"]
    with pytest.raises(DataError, match="no utterance is within"):
        filter_data_dir(org, tmp_path / "g", 8000, 5, 10)
    with pytest.raises(DataError, match="utt2num_samples.*run stage 3"):
        filter_data_dir(small_dir, tmp_path / "h", 8000, 0, 1)
