"""LibriSpeech recipe dry run: a fake 7-part corpus (2 utterances per part) through
local/data.sh and stages 1-4 of run.sh (audio formatted into Kaldi archives, ``flac.ark``; the
FSDD recipe test covers flac files); plus every recipe YAML through the parser."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2.recipe.librispeech import EVAL_PARTS, TRAIN_PARTS

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "librispeech" / "ssl1"
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "ssl1"
CONFIGS = sorted((REPO / "egs2").glob("*/ssl1/conf/**/*.yaml"))


def fake_corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i, part in enumerate((*TRAIN_PARTS, *EVAL_PARTS)):
        spk, chap = str(100 + i), "7"
        d = root / "LibriSpeech" / part / spk / chap
        d.mkdir(parents=True)
        lines = []
        for u in range(2):
            utt = f"{spk}-{chap}-{u:04d}"
            sf.write(d / f"{utt}.flac", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
            lines.append(f"{utt} HELLO WORLD {u}\n")
        (d / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return root / "LibriSpeech"


def test_librispeech_stages_1_to_4(tmp_path):
    corpus = fake_corpus(tmp_path / "corpus")
    d = tmp_path / "ssl1"
    d.mkdir()
    (d / "local").mkdir()
    for name in ("run.sh", "local/data.sh"):
        (d / name).write_text((RECIPE / name).read_text())
        (d / name).chmod(0o755)
    (d / "conf").symlink_to(RECIPE / "conf")
    for name in ("ssl.sh", "path.sh", "cmd.sh", "scripts"):
        (d / name).symlink_to(TEMPLATE / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "model": "dinosr"}
    proc = subprocess.run(
        ["./run.sh", "--local_data_opts", f"--root {corpus}", "--nj", "2", "--stop_stage", "4",
         "--audio_format", "flac.ark"],
        cwd=d,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    train = (d / "dump/raw/train_960/wav.scp").read_text().splitlines()
    assert len(train) == 6 and train[0].split()[0] == "100-7-0000"
    from espnet2.data.ark import parse_ark_spec
    from espnet2.data.audio import read_audio

    archives = {parse_ark_spec(line.split()[1])[0] for line in train}
    assert len(archives) == 2 and all(a.endswith("data_flac.ark") for a in archives)  # nj 2
    assert read_audio(train[0].split()[1], expected_fs=16000)[0].shape == (16000,)
    assert len((d / "dump/raw/dev/wav.scp").read_text().splitlines()) == 4
    assert (d / "data/train_960/text").read_text().startswith("100-7-0000 HELLO WORLD 0")
    assert (d / "data/dev/spk2utt").read_text().splitlines() == [
        "103-7 103-7-0000 103-7-0001",
        "104-7 104-7-0000 104-7-0001",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "egs2")))
def test_recipe_config_parses(config, tmp_path, monkeypatch, capsys):
    from espnet2.bin import ssl_train

    losses = (yaml.safe_load(config.read_text()) or {}).get("loss") or []
    k = max([e.get("conf", {}).get("num_classes", 0) for e in losses] + [1])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{i}\n" for i in range(k)))
    recipe_dir = next(p for p in config.parents if p.name == "ssl1")
    monkeypatch.chdir(recipe_dir)  # configs name files relative to the recipe (deepspeed.json)
    try:
        ssl_train.main(["--config", str(config), "--token_list", str(tokens), "--print_config"])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err[-3000:]
    assert "encoder_conf" in capsys.readouterr().out
    # the preflight's model check must really build every recipe model (not skip it)
    from espnet2.tasks.ssl import SSLTask

    args = SSLTask.parse_args(["--config", str(config), "--token_list", str(tokens)])
    model = SSLTask.build_model_on_meta(args)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)
    assert SSLTask.model_problems(args) == []
