"""Audio in Kaldi archives (``wav.scp`` values ``data.ark:OFFSET``): our writer and reader, both
checked against kaldiio (ESPnet's stage-3 writer) and Kaldi's plain RIFF entries, stage-3
formatting to ``*.ark``, and training on the ``kaldi_ark`` data type."""

from __future__ import annotations

import io

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from espnet2.data import ark
from espnet2.data.audio import audio_info, read_audio
from espnet2.data.errors import DataError
from espnet2.recipe import format as fmt


def pcm16(wave: np.ndarray, codec: str = "wav") -> np.ndarray:
    """What a 16-bit ``codec`` file of ``wave`` gives back (libsndfile quantises wav and flac
    differently)."""
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format=codec.upper(), subtype="PCM_16")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


@pytest.fixture
def waves():
    rng = np.random.default_rng(0)
    return {f"u{i}": (0.2 * rng.standard_normal(400 + 37 * i)).astype(np.float32)
            for i in range(4)}


def write_ours(path, waves, codec, fs=16000):
    with open(path, "wb") as f:
        return {u: f"{path}:{ark.write_ark_entry(f, u, ark.encode_audio(w, fs, codec))}"
                for u, w in waves.items()}


@pytest.mark.parametrize("codec", ["wav", "flac"])
def test_our_archive_reads_back_and_kaldiio_reads_it(tmp_path, waves, codec):
    scp = write_ours(tmp_path / "a.ark", waves, codec)
    for u, w in waves.items():
        got, fs = read_audio(scp[u], expected_fs=16000, utt=u)
        assert fs == 16000 and np.array_equal(got, pcm16(w, codec))
        assert audio_info(scp[u]) == (len(w), 16000, 1)
        rate, arr = kaldiio.load_mat(scp[u])  # the format ESPnet's readers expect
        assert rate == 16000 and np.allclose(arr, pcm16(w, codec), atol=1e-6)


def test_kaldiio_soundfile_archives_and_kaldi_riff_entries_read(tmp_path, waves):
    ark_path, scp_path = tmp_path / "k.ark", tmp_path / "k.scp"
    kaldiio.save_ark(str(ark_path), {u: (16000, w) for u, w in waves.items()}, scp=str(scp_path),
                     write_function="soundfile", write_kwargs={"format": "flac"})  # ESPnet's
    # Kaldi's wav-copy / kaldiio without write_function: plain RIFF entries
    riff = {u: (8000, (pcm16(w) * 32768).astype(np.int16)) for u, w in waves.items()}
    kaldiio.save_ark(str(tmp_path / "r.ark"), riff, scp=str(tmp_path / "r.scp"))
    for scp_file, fs, codec in ((scp_path, 16000, "flac"), (tmp_path / "r.scp", 8000, "wav")):
        scp = dict(line.split(" ", 1) for line in scp_file.read_text().splitlines())
        assert set(scp) == set(waves)
        for u, w in waves.items():
            got, rate = read_audio(scp[u], utt=u)
            assert rate == fs and np.array_equal(got, pcm16(w, codec)), (scp_file, u)


def test_bad_ark_references_name_the_utterance_and_what_is_there(tmp_path, waves):
    scp = write_ours(tmp_path / "a.ark", waves, "flac")
    kaldiio.save_ark(str(tmp_path / "m.ark"), {"feat": np.zeros((3, 4), np.float32)},
                     scp=str(tmp_path / "m.scp"))
    matrix = (tmp_path / "m.scp").read_text().split()[1]
    path, offset = ark.parse_ark_spec(scp["u2"])
    data = (tmp_path / "a.ark").read_bytes()
    (tmp_path / "cut.ark").write_bytes(data[: offset + 100])
    cases = {
        matrix: "not audio",
        f"{tmp_path}/missing.ark:12": "archive file does not exist",
        f"{tmp_path}/cut.ark:{offset}": "truncated",
        f"{path}:{len(data)}": "end of file",
        f"{path}:{offset + 3}": "no audio entry",
    }
    for spec, message in cases.items():
        with pytest.raises(DataError) as e:
            read_audio(spec, utt="utt_x")
        text = str(e.value)
        assert message in text and "utt_x" in text and "Fix" in text, text


def test_parse_ark_spec_leaves_plain_paths_alone(tmp_path):
    weird = tmp_path / "take:12"  # an existing file whose name ends in :digits
    sf.write(weird, np.zeros(100, np.float32), 16000, format="WAV", subtype="PCM_16")
    assert ark.parse_ark_spec(str(weird)) is None
    assert read_audio(str(weird))[0].shape == (100,)
    assert ark.parse_ark_spec("/x/a.flac") is None and ark.parse_ark_spec("sox a.wav - |") is None
    assert ark.parse_ark_spec("/x/data.ark:0") == ("/x/data.ark", 0)
    with pytest.raises(ValueError, match="ark key"):
        ark.write_ark_entry(io.BytesIO(), "two words", b"")


def test_format_to_flac_ark_one_archive_per_job(small_dir, tmp_path):
    out = tmp_path / "out"
    keys = ["a_1", "a_2", "b_1", "b_2"]
    lengths = fmt.format_utts(small_dir, keys, out, 16000, "flac.ark")
    scp = dict(line.split(" ", 1) for line in (out / "wav.scp").read_text().splitlines())
    assert sorted(p.name for p in out.iterdir()) == ["data_flac.ark", "utt2num_samples",
                                                     "wav.scp"]
    assert {ark.parse_ark_spec(v)[0] for v in scp.values()} == {str(out / "data_flac.ark")}
    ref = {}
    fmt.format_utts(small_dir, keys, tmp_path / "files", 16000, "flac")
    for line in (tmp_path / "files" / "wav.scp").read_text().splitlines():
        u, p = line.split(" ", 1)
        ref[u] = sf.read(p, dtype="float32")[0]
    for u in keys:  # the same samples as the one-file-per-utterance format
        got, _ = read_audio(scp[u], expected_fs=16000, utt=u)
        assert len(got) == lengths[u] and np.array_equal(got, ref[u])
    # an archive as the *input* of stage 3 (e.g. resampling ESPnet's dump again)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "wav.scp").write_text((out / "wav.scp").read_text())
    again = fmt.format_utts(tmp_path / "src", keys, tmp_path / "re", 8000, "wav")
    assert again == {u: lengths[u] // 2 for u in keys}


def test_format_ark_with_a_bad_entry_writes_nothing(small_dir, tmp_path):
    (small_dir / "wav.scp").write_text(
        (small_dir / "wav.scp").read_text().replace("a_2 ", "a_2 /nonexistent", 1))
    with pytest.raises(DataError, match="a_2"):
        fmt.format_utts(small_dir, ["a_1", "a_2"], tmp_path / "o", 16000, "wav.ark")
    assert not (tmp_path / "o" / "data_wav.ark").exists()
    assert not (tmp_path / "o" / "wav.scp").exists()


def test_other_speech_types_are_refused_naming_both_audio_types():
    from espnet2.train.collect_stats import data_streams

    assert data_streams([["w.scp", "speech", "kaldi_ark"]], "train") == {"speech": "w.scp"}
    with pytest.raises(DataError, match="'sound'.*'kaldi_ark'"):
        data_streams([["feats.scp", "speech", "npy"]], "train")


def test_ssl_train_on_kaldi_ark_data(tmp_path):
    """collect stats + 1 epoch on archives (data type kaldi_ark), as ESPnet's ssl.sh passes it."""
    from espnet2.bin import ssl_train
    from espnet2.testing.tiny_recipe import data_opts, write_tiny_recipe

    root = write_tiny_recipe(tmp_path)
    for part in ("train", "valid"):
        d = root / "data" / part
        keys = [line.split()[0] for line in (d / "wav.scp").read_text().splitlines()]
        fmt.format_utts(d, keys, root / "ark" / part, 8000, "flac.ark")  # the tiny rate
        (d / "wav.scp").rename(d / "wav.scp.files")
        (d / "wav.scp").write_text((root / "ark" / part / "wav.scp").read_text())
    opts = [o.replace(",speech,sound", ",speech,kaldi_ark") for o in data_opts(root)]
    stats = root / "stats"
    ssl_train.main([*opts, "--collect_stats", "true", "--output_dir", str(stats)])
    shapes = (stats / "train" / "speech_shape").read_text()
    assert len(shapes.splitlines()) == 6
    exp = root / "exp"
    ssl_train.main([*opts, "--train_shape_file", str(stats / "train" / "speech_shape"),
                    "--valid_shape_file", str(stats / "valid" / "speech_shape"),
                    "--max_epoch", "1", "--output_dir", str(exp)])
    assert (exp / "1epoch.pth").exists()
    assert "kaldi_ark" in (exp / "config.yaml").read_text()
