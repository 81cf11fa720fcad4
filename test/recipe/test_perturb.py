from __future__ import annotations

import numpy as np
import soundfile as sf

from espnet2.bin import perturb_speed
from espnet2.recipe import format as fmt
from espnet2.recipe.perturb import change_speed, perturb_and_combine, prefix


def test_change_speed_length_and_pitch():
    fs = 8000
    wav = np.sin(2 * np.pi * 400 * np.arange(fs) / fs).astype(np.float32)
    fast = change_speed(wav, fs, 1.25)
    assert len(fast) == 6400
    freq = np.argmax(np.abs(np.fft.rfft(fast))) * fs / len(fast)
    assert abs(freq - 500) < 3  # played faster: pitch up by the factor


def test_perturb_and_combine_ids_and_audio(small_dir, tmp_path):
    dst = tmp_path / "train_sp"
    n = perturb_and_combine(small_dir, dst, [0.9, 1.0, 1.1])
    assert n == 12
    keys = [line.split()[0] for line in (dst / "utt2spk").read_text().splitlines()]
    assert "a_1" in keys and "sp0.9-a_1" in keys and "sp1.1-b_2" in keys
    assert prefix(0.9) == "sp0.9-"
    spk = dict(line.split() for line in (dst / "utt2spk").read_text().splitlines())
    assert spk["sp0.9-a_1"] == "sp0.9-a"
    scp = dict(line.split(" ", 1) for line in (dst / "wav.scp").read_text().splitlines())
    assert scp["sp1.1-b_2"].endswith("|")
    wav, fs = fmt.read_recording(scp["sp1.1-b_2"])  # the pipe runs perturb_speed --pipe
    assert fs == 8000 and abs(len(wav) - 3200 / 1.1) <= 1


def test_cli(small_dir, tmp_path):
    assert perturb_speed.main(["--factors", "1.0 1.1", str(small_dir), str(tmp_path / "sp")]) == 0
    assert len((tmp_path / "sp" / "wav.scp").read_text().splitlines()) == 8
    data, fs = sf.read(str(small_dir.parent / "wav" / "a_1.wav"))
    assert fs == 8000 and len(data) == 800


def test_pipe_cli_matches_in_process_reading(small_dir, tmp_path):
    import io
    import subprocess

    dst = tmp_path / "sp"
    perturb_and_combine(small_dir, dst, [0.9])
    spec = (dst / "wav.scp").read_text().splitlines()[0].split(" ", 1)[1]
    inproc, fs = fmt.read_recording(spec)  # parsed: no subprocess
    out = subprocess.run(spec[:-1], shell=True, capture_output=True, check=True).stdout
    piped, fs2 = sf.read(io.BytesIO(out), dtype="float32")
    assert fs == fs2 == 8000 and len(piped) == len(inproc)
    assert np.abs(piped - inproc).max() < 1e-3  # 16-bit PCM round trip
