"""The FSDD ssl1 recipe end to end, in a temp copy of egs2/fsdd/ssl1.

* stages 1-4 on a 3-takes subset: Kaldi dirs, formatted 16 kHz flac dump dirs, length filter;
  a re-run skips every finished stage; changing one option re-runs only what depends on it.
* every stage whose CLI exists (7 train, 8 probe, 9 pack), both configs, 1 epoch each.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "fsdd" / "ssl1"
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "ssl1"


def make_recipe(tmp_path: Path) -> Path:
    d = tmp_path / "ssl1"
    d.mkdir()
    for name in ("run.sh", "local", "conf"):
        src = RECIPE / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    for name in ("ssl.sh", "path.sh", "cmd.sh", "scripts"):
        (d / name).symlink_to(TEMPLATE / name)
    return d


def run(d: Path, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["./run.sh", *args], cwd=d, capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stderr + proc.stdout


def keys(p: Path) -> list[str]:
    return [line.split()[0] for line in p.read_text().splitlines()]


def test_stages_1_to_4_then_rerun_skips(tmp_path, fsdd_root):
    d = make_recipe(tmp_path)
    run(d, "--fsdd_root", str(fsdd_root), "--subset", "3", "--stop_stage", "4")
    spk = {}
    for dset, n in (("train", 80), ("valid", 40), ("test", 60)):
        dump = d / "dump" / "raw" / dset
        for f in ("wav.scp", "utt2num_samples", "utt2spk", "spk2utt", "text", "feats_type"):
            assert (dump / f).is_file(), dump / f
        assert len(keys(dump / "wav.scp")) == n
        assert keys(dump / "wav.scp") == keys(dump / "utt2num_samples") == keys(dump / "text")
        utt, path = (dump / "wav.scp").read_text().splitlines()[0].split()
        info = sf.info(path)
        assert info.samplerate == 16000 and path.endswith(".flac")
        org = dict(
            line.split()
            for line in (d / "dump/raw/org" / dset / "utt2num_samples").read_text().splitlines()
        )
        assert info.frames == int(org[utt])
        spk[dset] = set((dump / "spk2utt").read_text().split()[::1]) & {
            "george",
            "jackson",
            "lucas",
            "nicolas",
            "theo",
            "yweweler",
        }
    assert spk["train"] == spk["valid"] and not spk["train"] & spk["test"]
    # HuBERT's pass trains on speed-perturbed copies (stage 2); the probe keeps dump/raw/train
    sp = keys(d / "dump/raw/train_sp/wav.scp")
    assert 300 < len(sp) <= 400 and set(keys(d / "dump/raw/train/wav.scp")) <= set(sp)
    factors = {k.split("-")[0] for k in sp if k.startswith("sp")}
    assert factors == {"sp0.8", "sp0.9", "sp1.1", "sp1.2"}
    # 8 kHz -> 16 kHz doubles every length
    raw = {
        r.split("\t")[0]: int(r.split("\t")[6])
        for r in (fsdd_root / "utterances.tsv").read_text().splitlines()[1:]
    }
    n2s = dict(
        line.split() for line in (d / "dump/raw/train/utt2num_samples").read_text().splitlines()
    )
    assert all(int(v) == 2 * raw[k] for k, v in n2s.items())

    before = (d / "dump/raw/train/wav.scp").stat().st_mtime_ns
    log = run(d, "--fsdd_root", str(fsdd_root), "--subset", "3", "--stop_stage", "4")
    assert log.count("already done") >= 7  # stage 1, 3 x 3 sets, 4 x 3 sets (per config pass)
    assert (d / "dump/raw/train/wav.scp").stat().st_mtime_ns == before

    # a stricter length filter: stage 4 runs again, stages 1 and 3 stay skipped
    log = run(
        d,
        "--fsdd_root",
        str(fsdd_root),
        "--subset",
        "3",
        "--stop_stage",
        "4",
        "--max_wav_duration",
        "0.5",
    )
    # two ssl.sh passes (hubert, dinosr): stage 3 skipped in both, stage 4 only in the second
    assert log.count("dump/raw/org/train/.done matches") == 2
    assert log.count("(dump/raw/train/.done matches") == 1
    lengths = [int(v) for v in (d / "dump/raw/train/utt2num_samples").read_text().split()[1::2]]
    assert lengths and max(lengths) < 0.5 * 16000 and len(lengths) < 80


def _last_stage() -> int:
    have = {
        m: importlib.util.find_spec(f"espnet2.bin.{m}") is not None
        for m in ("ssl_train", "make_pseudo_labels", "ssl_probe", "pack_ssl")
    }
    if not (have["ssl_train"] and have["make_pseudo_labels"]):
        return 4
    return 9 if have["ssl_probe"] and have["pack_ssl"] else 8 if have["ssl_probe"] else 7


@pytest.mark.slow
def test_whole_recipe_small(tmp_path, fsdd_root):
    last = _last_stage()
    d = make_recipe(tmp_path)
    opts = ("--fsdd_root", str(fsdd_root), "--subset", "3", "--stop_stage", str(last),
            "--ssl_args", "--max_epoch 1", "--probe_opts", "--epochs 20")
    run(d, *opts, timeout=900)
    for tag in ("train_hubert_raw", "train_dinosr_raw"):
        exp = d / "exp" / f"ssl_{tag}"
        if last >= 7:
            assert (exp / "config.yaml").is_file() and (exp / "run.sh").is_file()
            assert "--stage 7" in (exp / "run.sh").read_text()
        if last >= 8:
            assert (exp / "probe" / "probe.json").is_file()
        if last >= 9:
            (packed,) = exp.glob("*.zip")
            names = set(zipfile.ZipFile(packed).namelist())
            assert {"config.yaml", "model.pth"} <= names, names
            if tag == "train_hubert_raw":  # the labels' k-means model travels with it
                assert {"kmeans/km_200.npy", "kmeans/km_200.json"} <= names, names
    if last >= 5:
        tokens = d / "exp" / "kmeans_mfcc_200_train_sp_cmvn" / "tokens.txt"
        assert tokens.is_file()
        assert json.loads((tokens.parent / "km_200.json").read_text())["cmvn"] == "utterance"
        labels = (d / "dump/raw/train_sp/text").read_text().splitlines()[0].split()[1:]
        assert all(x.isdigit() and int(x) < 200 for x in labels)
    if last >= 7:  # everything finished: a re-run skips all stages
        log = run(d, *opts)
        assert "Stage 7: Training" in log and "exp/ssl_train_dinosr_raw/.done matches" in log
    if last >= 8:  # a seed study: stages 7-8 once per seed, then the gains summarised
        run(d, *opts, "--seeds", "3", timeout=900)
        for config in ("hubert", "dinosr"):
            exp = d / "exp" / f"ssl_train_{config}_raw_seed3"
            conf = yaml.safe_load((exp / "config.yaml").read_text())
            assert conf["seed"] == 3 and conf["max_epoch"] == 1  # --ssl_args kept, seed added
            probe = json.loads((exp / "probe" / "probe.json").read_text())
            sel = {r["name"]: r["test_acc"] for r in probe["tasks"]["digit"]["results"]
                   if r["selected"]}
            summary = json.loads((d / "exp" / f"seed_study_train_{config}_raw.json").read_text())
            gain = 100 * (sel[exp.name] - sel[f"{exp.name}_random_init"])
            assert summary["runs"] == 1 and summary["min_gain"] == pytest.approx(gain)
            assert summary["target_met"] == (gain >= 10 and not summary["below_baseline"])
            assert "gain mean" in (d / "exp" / f"seed_study_train_{config}_raw.md").read_text()
            low, high = summary["per_run"][0]["gain_ci"]  # the run's test-set interval
            assert low <= gain <= high
