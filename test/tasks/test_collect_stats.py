"""--collect_stats output format, aggregate_stats_dirs and split_scps CLIs, preflight."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from espnet2.bin import aggregate_stats_dirs, split_scps
from espnet2.data.frames import FrameGeometry
from espnet2.tasks.preflight import PreflightError
from espnet2.tasks.ssl import SSLTask

GEOM = FrameGeometry(45, 20, 0)  # shapes [[16,10,5],[16,8,4]]
TINY = [
    "--frontend_conf", "{shapes: [[16, 10, 5], [16, 8, 4]], fs: 8k}", "--normalize", "none",
    "--preencoder_conf", "output_size=16",
    "--encoder_conf", "output_size=16,attention_heads=2,linear_units=32,num_blocks=1",
    "--loss", "[{name: hubert, conf: {final_dim: 8}}]",
]


def make_dir(root, phase="train", n=4, seed=0, label_rate=1.0, fs=8000):
    """wav.scp + text (labels at ``label_rate`` x the frame rate) + tokens.txt under root."""
    rng = np.random.default_rng(seed)
    d = root / phase
    d.mkdir(parents=True, exist_ok=True)
    lengths = {}
    with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t:
        for i in range(n):
            utt, num = f"{phase}_{i:02d}", int(rng.integers(2000, 4000))
            sf.write(d / f"{utt}.wav", 0.1 * rng.standard_normal(num), fs, subtype="PCM_16")
            w.write(f"{utt} {d / utt}.wav\n")
            labels = rng.integers(0, 10, int(GEOM.num_frames(num) * label_rate))
            t.write(utt + " " + " ".join(map(str, labels)) + "\n")
            lengths[utt] = num
    (root / "tokens.txt").write_text("\n".join([*map(str, range(10)), "<sos/eos>", "<unk>"]))
    return d, lengths


def data_args(root, phases=("train", "valid")):
    out = ["--token_list", str(root / "tokens.txt")]
    for p in phases:
        out += [f"--{p}_data_path_and_name_and_type", f"{root / p}/wav.scp,speech,sound",
                f"--{p}_data_path_and_name_and_type", f"{root / p}/text,text,text"]
    return out


def test_collect_stats_writes_espnet_layout(tmp_path):
    _, train_len = make_dir(tmp_path / "data", "train", 4)
    make_dir(tmp_path / "data", "valid", 2, seed=1)
    out = tmp_path / "stats"
    SSLTask.main([*TINY, *data_args(tmp_path / "data"), "--collect_stats", "true",
                  "--output_dir", str(out)])
    lines = (out / "train" / "speech_shape").read_text().splitlines()
    assert {ln.split()[0]: int(ln.split()[1]) for ln in lines} == train_len
    text_shape = dict(ln.split() for ln in (out / "train" / "text_shape").read_text().splitlines())
    assert {k: int(v) for k, v in text_shape.items()} == {
        k: GEOM.num_frames(n) for k, n in train_len.items()}
    assert (out / "train" / "batch_keys").read_text().split() == ["speech", "text"]
    assert (out / "train" / "stats_keys").read_text().split() == []  # learned CNN: no stats
    assert len((out / "valid" / "speech_shape").read_text().splitlines()) == 2
    assert (out / "config.yaml").is_file() and (out / "train.log").is_file()


def test_collect_stats_fbank_stats_and_aggregate(tmp_path):
    make_dir(tmp_path / "data", "train", 4)
    make_dir(tmp_path / "data", "valid", 2, seed=1)
    wav = (tmp_path / "data" / "train" / "wav.scp").read_text().splitlines()
    (tmp_path / "k1").write_text("\n".join(wav[:2]) + "\n")
    (tmp_path / "k2").write_text("\n".join(wav[2:]) + "\n")
    fbank = ["--frontend", "default", "--frontend_conf", "{n_fft: 128, hop_length: 64, "
             "n_mels: 8, fs: 8k}", "--preencoder_conf", "output_size=16",
             "--normalize", "global_mvn", "--loss", "[{name: dinosr}]"]
    jobs = []
    for j, keys in enumerate(["k1", "k2"]):
        out = tmp_path / f"stats.{j}"
        SSLTask.main([*fbank, "--collect_stats", "true", "--output_dir", str(out),
                      "--train_data_path_and_name_and_type",
                      f"{tmp_path}/data/train/wav.scp,speech,sound",
                      "--train_shape_file", str(tmp_path / keys)])
        jobs.append(str(out))
        with np.load(out / "train" / "feats_stats.npz") as s:
            assert s["sum"].shape == (8,) and int(s["count"]) > 0
    aggregate_stats_dirs.main(["--input_dir", *jobs, "--output_dir", str(tmp_path / "agg")])
    merged = (tmp_path / "agg" / "train" / "speech_shape").read_text().splitlines()
    assert [ln.split()[0] for ln in merged] == sorted(ln.split()[0] for ln in wav)
    with np.load(tmp_path / "agg" / "train" / "feats_stats.npz") as s, \
            np.load(tmp_path / "stats.0" / "train" / "feats_stats.npz") as a, \
            np.load(tmp_path / "stats.1" / "train" / "feats_stats.npz") as b:
        assert int(s["count"]) == int(a["count"]) + int(b["count"])
        np.testing.assert_allclose(s["sum_square"], a["sum_square"] + b["sum_square"])
    aggregate_stats_dirs.main(["--input_dir", *jobs, "--output_dir", str(tmp_path / "skip"),
                               "--skip_sum_stats"])
    assert not (tmp_path / "skip" / "train" / "feats_stats.npz").exists()


def test_split_scps_cli(tmp_path):
    d, _ = make_dir(tmp_path / "data", "train", 5)
    split_scps.main(["--scps", str(d / "wav.scp"), str(d / "text"), "--num_splits", "2",
                     "--output_dir", str(tmp_path / "splits")])
    assert (tmp_path / "splits" / "num_splits").read_text().strip() == "2"
    a = (tmp_path / "splits" / "split.0" / "wav.scp").read_text().splitlines()
    b = (tmp_path / "splits" / "split.1" / "wav.scp").read_text().splitlines()
    assert len(a) + len(b) == 5 and len(a) == 3


def test_preflight_reports_every_problem_at_once(tmp_path):
    data = tmp_path / "data"
    d, lengths = make_dir(data, "train", 3, label_rate=2.0)  # 100 Hz-style labels
    with open(d / "text", "a") as f:
        f.write("ghost 1 2 3\n")  # utt not in wav.scp
    text = (d / "text").read_text().replace(" 3 ", " 99 ", 1)  # a label not in the tokens
    (d / "text").write_text(text)
    shape = tmp_path / "speech_shape"
    shape.write_text("".join(f"{k} {v}\n" for k, v in lengths.items()))
    args = SSLTask.parse_args([*TINY, *data_args(data, ["train"]), "--train_shape_file",
                               str(shape), "--batch_bins", "1000",
                               "--util", "[{name: mask, conf: {mask_prob: 0.0}}]"])
    args.loss[0]["conf"]["num_classes"] = 4
    with pytest.raises(PreflightError) as e:
        SSLTask.run_preflight(args)
    text = str(e.value)
    assert "num_classes=4" in text  # vs the 10-label token list
    assert "ghost" in text  # utt sets disagree
    assert "'99'" in text  # label not in the token list
    utt = next(iter(lengths))
    frames = GEOM.num_frames(lengths[utt])
    assert f"utt '{utt}'" in text and f"{frames} frames for {lengths[utt]} samples" in text
    assert "label_downsampling: 2" in text  # likely cause named
    assert "batch_bins=1000 is smaller than the longest utterance" in text
    assert "mask_prob=0.0" in text
    assert len(e.value.problems) >= 6
