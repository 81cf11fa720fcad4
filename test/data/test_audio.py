import sys

import numpy as np
import pytest
import soundfile

from espnet2.data.audio import audio_info, read_audio
from espnet2.data.errors import DataError
from espnet2.data.kaldi import Segment


def _int16(n=800, seed=0):
    return np.random.default_rng(seed).integers(-32768, 32768, n, dtype=np.int16)


def _pipe_cmd(path):
    # A pipe that writes the wav bytes to stdout without sox.
    return (f"{sys.executable} -c \"import sys; "
            f"sys.stdout.buffer.write(open('{path}', 'rb').read())\" |")


def test_int16_wav_to_float32(tmp_path):
    x = _int16()
    x[:3] = [-32768, 32767, 0]
    soundfile.write(tmp_path / "a.wav", x, 8000, subtype="PCM_16")
    wave, fs = read_audio(str(tmp_path / "a.wav"))
    assert fs == 8000 and wave.dtype == np.float32 and wave.shape == (800,)
    np.testing.assert_array_equal(wave, x.astype(np.float32) / 32768)
    assert wave[0] == -1.0 and wave[1] < 1.0


def test_flac(tmp_path):
    x = _int16(seed=1)
    soundfile.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    wave, fs = read_audio(str(tmp_path / "a.flac"), expected_fs=16000)
    assert fs == 16000
    np.testing.assert_array_equal(wave, x.astype(np.float32) / 32768)
    assert audio_info(str(tmp_path / "a.flac")) == (800, 16000, 1)


def test_pipe(tmp_path):
    x = _int16(seed=2)
    soundfile.write(tmp_path / "a.wav", x, 8000, subtype="PCM_16")
    spec = _pipe_cmd(tmp_path / "a.wav")
    wave, fs = read_audio(spec)
    np.testing.assert_array_equal(wave, x.astype(np.float32) / 32768)
    assert audio_info(spec) == (800, 8000, 1)
    cat, _ = read_audio(f"cat {tmp_path}/a.wav |")
    np.testing.assert_array_equal(cat, wave)


def test_failing_pipe_names_utt_and_command(tmp_path):
    with pytest.raises(DataError) as ei:
        read_audio(f"{sys.executable} -c 'import sys; sys.exit(3)' |", utt="u7")
    s = str(ei.value)
    assert "utt 'u7'" in s and "exit code 3" in s and "Fix:" in s


def test_segment(tmp_path):
    x = _int16(8000, seed=3)
    soundfile.write(tmp_path / "r.wav", x, 8000, subtype="PCM_16")
    wave, _ = read_audio(str(tmp_path / "r.wav"), segment=Segment("r", 0.25, 0.5))
    np.testing.assert_array_equal(wave, x[2000:4000].astype(np.float32) / 32768)
    wave, _ = read_audio(_pipe_cmd(tmp_path / "r.wav"), segment=(0.5, 2.0))  # end clipped
    assert wave.shape == (4000,)
    with pytest.raises(DataError, match="after the end"):
        read_audio(str(tmp_path / "r.wav"), segment=(1.5, 2.0), utt="s1")


def test_stereo_error(tmp_path):
    soundfile.write(tmp_path / "s.wav", np.zeros((100, 2), np.int16), 8000)
    with pytest.raises(DataError) as ei:
        read_audio(str(tmp_path / "s.wav"), utt="u1")
    s = str(ei.value)
    assert "utt 'u1'" in s and "2 channels" in s and str(tmp_path / "s.wav") in s
    assert "remix" in s


def test_wrong_fs_error(tmp_path):
    soundfile.write(tmp_path / "a.wav", _int16(), 8000, subtype="PCM_16")
    with pytest.raises(DataError) as ei:
        read_audio(str(tmp_path / "a.wav"), expected_fs=16000, utt="u2")
    s = str(ei.value)
    assert "utt 'u2'" in s and "8000 Hz" in s and "16000 Hz" in s
    assert "stage 3" in s and "--fs" in s


def test_zero_length_and_nan(tmp_path):
    soundfile.write(tmp_path / "z.wav", np.zeros(0, np.int16), 8000)
    with pytest.raises(DataError, match="zero length"):
        read_audio(str(tmp_path / "z.wav"), utt="z")
    y = np.zeros(100, np.float32)
    y[5] = np.nan
    y[7] = np.inf
    soundfile.write(tmp_path / "n.wav", y, 8000, subtype="FLOAT")
    with pytest.raises(DataError) as ei:
        read_audio(str(tmp_path / "n.wav"), utt="n")
    assert "NaN or Inf" in str(ei.value) and "2 non-finite" in str(ei.value)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_audio(str(tmp_path / "nope.wav"), utt="m")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(DataError) as ei:
        read_audio(str(tmp_path / "bad.wav"), utt="b")
    assert "cannot decode" in str(ei.value) and "utt 'b'" in str(ei.value)


def test_fsdd_file(fsdd_root):
    path = str(fsdd_root / "recordings" / "0_george_0.wav")
    wave, fs = read_audio(path, expected_fs=8000)
    frames, fs2, ch = audio_info(path)
    assert fs == fs2 == 8000 and ch == 1 and wave.shape == (frames,)
    assert np.abs(wave).max() <= 1.0
