"""A tiny synthetic ssl_train setup shared by integration tests: 8 kHz noise utterances, random
frame labels aligned to a 2-layer CNN (geometry (45, 20, 0)), a 10-token list and a YAML config
that trains in seconds on one CPU thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from espnet2.data.frames import FrameGeometry

GEOM = FrameGeometry(45, 20, 0)
TINY_YAML = """\
frontend: wav2vec_cnn
frontend_conf: {shapes: [[16, 10, 5], [16, 8, 4]], fs: 8k}
normalize: null
preencoder: linear
preencoder_conf: {output_size: 16}
encoder: transformer
encoder_conf: {output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2,
               input_layer: wav2vec, pos_enc_layer_type: conv, normalize_before: false}
loss: [{name: hubert, conf: {final_dim: 8}}]
util: [{name: mask, conf: {mask_prob: 0.5, mask_length: 3}}]
optim: adam
optim_conf: {lr: 0.001}
batch_type: numel
batch_bins: 16000
max_epoch: 2
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_workers: 0
use_tensorboard: false
use_matplotlib: false
"""


def write_tiny_recipe(tmp_path: Path) -> Path:
    """Write data/{train,valid}/{wav.scp,text}, tokens.txt and tiny.yaml under ``tmp_path``."""
    rng = np.random.default_rng(0)
    for phase, n in (("train", 6), ("valid", 2)):
        d = tmp_path / "data" / phase
        d.mkdir(parents=True)
        with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t:
            for i in range(n):
                utt, num = f"{phase}_{i:02d}", int(rng.integers(2400, 4000))
                sf.write(d / f"{utt}.wav", 0.1 * rng.standard_normal(num), 8000,
                         subtype="PCM_16")
                w.write(f"{utt} {d / utt}.wav\n")
                labels = rng.integers(0, 10, GEOM.num_frames(num))
                t.write(utt + " " + " ".join(map(str, labels)) + "\n")
    (tmp_path / "tokens.txt").write_text("\n".join([*map(str, range(10)), "<sos/eos>\\n<unk>"]))
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    return tmp_path


def data_opts(root, train_dir=None, labels=True):
    train_dir = train_dir or root / "data" / "train"
    opts = ["--config", str(root / "tiny.yaml"),
            "--train_data_path_and_name_and_type", f"{train_dir}/wav.scp,speech,sound",
            "--valid_data_path_and_name_and_type", f"{root}/data/valid/wav.scp,speech,sound"]
    if labels:
        opts += ["--token_list", str(root / "tokens.txt"),
                 "--train_data_path_and_name_and_type", f"{train_dir}/text,text,text",
                 "--valid_data_path_and_name_and_type", f"{root}/data/valid/text,text,text"]
    return opts
