"""A tiny synthetic Kaldi-style corpus for end-to-end tests (seconds on one CPU core).

:func:`write_corpus` writes, under ``root``::

    data/{train,valid}/wav.scp, text        8 kHz mono PCM-16 noise + frame-aligned labels
    data/{train,valid}/<utt>.wav
    stats/{train,valid}/speech_shape         ``utt num_samples`` (what --collect_stats writes)
    tokens.txt                               ``0 .. K-1`` then ``<sos/eos>`` and ``<unk>``
    tiny.yaml                                a 2-block width-16 HuBERT config (:data:`TINY_YAML`)

Labels are one per frame of :data:`GEOMETRY` (the tiny 2-layer CNN of :data:`TINY_YAML`), so the
corpus passes the preflight as written; tests then break one thing at a time and check that the
preflight (or the loader) names it. :meth:`Corpus.args` builds the ``ssl_train`` command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from espnet2.data.frames import FrameGeometry

#: frame geometry of TINY_YAML's ``shapes: [[16, 10, 5], [16, 8, 4]]`` CNN frontend
GEOMETRY = FrameGeometry(45, 20, 0)
FS = 8000

TINY_YAML = """\
frontend: wav2vec_cnn
frontend_conf: {shapes: [[16, 10, 5], [16, 8, 4]], fs: 8k}
normalize: null
preencoder: linear
preencoder_conf: {output_size: 16}
encoder: transformer
encoder_conf: {output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1,
               input_layer: wav2vec, pos_enc_layer_type: conv, normalize_before: false}
loss: [{name: hubert, conf: {final_dim: 8}}]
util: [{name: mask, conf: {mask_prob: 0.5, mask_length: 3}}]
optim: adam
optim_conf: {lr: 0.001}
batch_type: numel
batch_bins: 16000
max_epoch: 1
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_workers: 0
num_threads: 1
use_tensorboard: false
use_matplotlib: false
"""


@dataclass
class Corpus:
    """Paths of a corpus written by :func:`write_corpus`."""

    root: Path
    num_tokens: int
    utts: dict[str, list[str]] = field(default_factory=dict)  # phase -> utterance ids

    def data_dir(self, phase: str = "train") -> Path:
        return self.root / "data" / phase

    def wav_scp(self, phase: str = "train") -> Path:
        return self.data_dir(phase) / "wav.scp"

    def text(self, phase: str = "train") -> Path:
        return self.data_dir(phase) / "text"

    def shape(self, phase: str = "train") -> Path:
        return self.root / "stats" / phase / "speech_shape"

    def wav(self, utt: str, phase: str = "train") -> Path:
        return self.data_dir(phase) / f"{utt}.wav"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.txt"

    @property
    def config(self) -> Path:
        return self.root / "tiny.yaml"

    def args(self, output_dir: str | Path, *, labels: bool = True, shapes: bool = True,
             valid: bool = True, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
        """``ssl_train`` options for this corpus (YAML first, then ``extra`` overrides)."""
        out = ["--config", str(self.config), "--output_dir", str(output_dir)]
        phases = ("train", "valid") if valid else ("train",)
        for phase in phases:
            out += [f"--{phase}_data_path_and_name_and_type", f"{self.wav_scp(phase)},speech,sound"]
            if labels:
                out += [f"--{phase}_data_path_and_name_and_type", f"{self.text(phase)},text,text"]
            if shapes:
                out += [f"--{phase}_shape_file", str(self.shape(phase))]
        if labels:
            out += ["--token_list", str(self.tokens)]
        return [*out, *extra]

    def user_files(self) -> list[Path]:
        """Every file the corpus wrote (for byte-identical checks)."""
        return sorted(p for p in self.root.rglob("*")
                      if p.is_file() and not p.relative_to(self.root).parts[0].startswith("exp"))


def snapshot(paths: list[Path] | Path) -> dict[str, bytes]:
    """``{path: bytes}`` of files (a dir: every file under it), to compare before/after a run."""
    if isinstance(paths, Path):
        paths = sorted(p for p in paths.rglob("*") if p.is_file()) if paths.is_dir() else []
    return {str(p): p.read_bytes() for p in paths}


def write_corpus(root: str | Path, *, n_train: int = 4, n_valid: int = 2, num_tokens: int = 10,
                 min_samples: int = 2400, max_samples: int = 3600, seed: int = 0,
                 yaml_text: str = TINY_YAML) -> Corpus:
    """Write the corpus described in the module docstring; returns its :class:`Corpus`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    corpus = Corpus(root, num_tokens)
    for phase, n in (("train", n_train), ("valid", n_valid)):
        d = corpus.data_dir(phase)
        d.mkdir(parents=True, exist_ok=True)
        corpus.shape(phase).parent.mkdir(parents=True, exist_ok=True)
        wav_lines, text_lines, shape_lines = [], [], []
        for i in range(n):
            utt = f"{phase}_{i:02d}"
            num = int(rng.integers(min_samples, max_samples + 1))
            soundfile.write(corpus.wav(utt, phase), 0.1 * rng.standard_normal(num), FS,
                            subtype="PCM_16")
            labels = rng.integers(0, num_tokens, GEOMETRY.num_frames(num))
            wav_lines.append(f"{utt} {corpus.wav(utt, phase)}\n")
            text_lines.append(f"{utt} {' '.join(map(str, labels))}\n")
            shape_lines.append(f"{utt} {num}\n")
        corpus.wav_scp(phase).write_text("".join(wav_lines))
        corpus.text(phase).write_text("".join(text_lines))
        corpus.shape(phase).write_text("".join(shape_lines))
        corpus.utts[phase] = [f"{phase}_{i:02d}" for i in range(n)]
    corpus.tokens.write_text("\n".join([*map(str, range(num_tokens)), "<sos/eos>", "<unk>"])
                             + "\n")
    corpus.config.write_text(yaml_text)
    return corpus
