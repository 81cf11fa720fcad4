"""Load a pre-trained SSL model for downstream use: ``load_pretrained(path)``.

``path`` is an experiment dir (``config.yaml`` + a model file such as ``valid.loss.ave.pth``), a
model file inside one, or an archive written by ``espnet2.bin.pack_ssl``. The returned
:class:`PretrainedSSL` is an :class:`AbsFrontend`: it maps waveforms to a learnable weighted sum
(or a fixed choice) of encoder layers, so it can sit in front of a downstream model, and it
exposes :meth:`PretrainedSSL.hidden_states` for feature extraction.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import zipfile
from pathlib import Path

import torch
import yaml

from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.data.frames import FrameGeometry

logger = logging.getLogger(__name__)

MODEL_FILE_PREFERENCE = (
    "model.pth",
    "valid.loss.ave.pth",
    "valid.total_count.ave.pth",
    "latest.pth",
)


def resolve_model_file(exp_dir: Path, model_file: str | None = None) -> Path:
    """Pick the model file of an experiment dir: ``model_file`` if given, else the first that exists
    of :data:`MODEL_FILE_PREFERENCE`, else the newest ``*epoch.pth``."""
    if model_file is not None:
        p = Path(model_file)
        p = p if p.is_absolute() or p.exists() else exp_dir / p
        if not p.exists():
            raise FileNotFoundError(
                f"model file {p} does not exist; pick one of {_pth_files(exp_dir)}"
            )
        return p
    for name in MODEL_FILE_PREFERENCE:
        if (exp_dir / name).exists():
            return exp_dir / name
    epochs = sorted(exp_dir.glob("*epoch.pth"), key=lambda p: int(p.name.split("epoch")[0]))
    if epochs:
        return epochs[-1]
    raise FileNotFoundError(
        f"no model file in {exp_dir}: did training finish? found {_pth_files(exp_dir)}"
    )


def _pth_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.pth"))


def setup_cli(num_threads: int, device: str) -> str:
    """Logging, torch threads and the device (``auto``: CUDA when present) for the SSL tools."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(num_threads)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _is_packed(path: Path) -> bool:
    """A pack_ssl archive (a torch ``.pth`` is a zip too, without ``config.yaml``)."""
    with zipfile.ZipFile(path) as zf:
        return "config.yaml" in zf.namelist()


def build_model_from_config(config: dict) -> torch.nn.Module:
    """Build an untrained ESPnetSSLModel from a resolved ``config.yaml`` dict.

    Options the config predates (written by an older version) take their current defaults.
    """
    from espnet2.tasks.ssl import SSLTask

    return SSLTask.build_model(argparse.Namespace(**{**vars(SSLTask.parse_args([])), **config}))


def build_initial_model(config: dict) -> torch.nn.Module:
    """The weights a training run with this ``config.yaml`` started from: seed with its
    ``seed`` (as ``ssl_train`` does before building), then build. The probe's random-init
    baseline."""
    from espnet2.train.checkpoint import seed_everything

    seed_everything(int(config.get("seed", 0)))
    return build_model_from_config(config)


def load_model(path: str | Path, model_file: str | None = None, device: str = "cpu"):
    """Return ``(model, config, exp_dir)`` with weights loaded, in eval mode."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path) and _is_packed(path):
        tmp = Path(tempfile.mkdtemp(prefix="ssl_pack_"))
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        path = tmp
    if path.is_file():
        exp_dir, mfile = path.parent, path
    else:
        exp_dir, mfile = path, resolve_model_file(path, model_file)
    cfg_path = exp_dir / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(
            f"{cfg_path} not found: pass an experiment dir written by ssl_train"
        )
    with open(cfg_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    token_list = config.get("token_list")
    if token_list and not Path(token_list).is_absolute() and (exp_dir / token_list).exists():
        config["token_list"] = str(exp_dir / token_list)  # packed archives keep it inside
    model = build_model_from_config(config)
    state = torch.load(mfile, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    logger.info("loaded %s with config %s", mfile, cfg_path)
    return model.to(device).eval(), config, exp_dir


class PretrainedSSL(AbsFrontend):
    """A pre-trained SSL encoder used as a frontend: (B, N) -> (B, T, D).

    Args:
        model: an ESPnetSSLModel (its ``extract_features`` gives per-layer hidden states).
        layers: encoder layers to use (0-based; None = all).
        weighted_sum: learn softmax weights over ``layers`` (SUPERB); else average them.
        freeze: keep the SSL weights fixed (no grad).
    """

    def __init__(
        self, model, layers: list[int] | None = None, weighted_sum: bool = True, freeze: bool = True
    ):
        super().__init__()
        self.model = model
        self.layers = layers
        self.freeze = freeze
        n = len(layers) if layers is not None else model.encoder.num_layers()
        self.layer_logits = torch.nn.Parameter(torch.zeros(n), requires_grad=weighted_sum)
        if freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)

    def output_size(self) -> int:
        return self.model.encoder.output_size()

    def frame_geometry(self) -> FrameGeometry:
        return self.model.frontend.frame_geometry()

    def hidden_states(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, layers: list[int] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-layer hidden states, each (B, T, D), and (B,) frame counts (no masking)."""
        layers = layers if layers is not None else self.layers
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            return self.model.extract_features(speech, speech_lengths, layers=layers)

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor):
        hs, lens = self.hidden_states(input, input_lengths)
        w = torch.softmax(self.layer_logits, dim=0)
        return torch.einsum("lbtd,l->btd", torch.stack(hs), w), lens


def load_pretrained(
    path: str | Path,
    model_file: str | None = None,
    layers: list[int] | None = None,
    device: str = "cpu",
    freeze: bool = True,
) -> PretrainedSSL:
    """Load an experiment dir / model file / packed archive as a :class:`PretrainedSSL`."""
    model, _, _ = load_model(path, model_file, device)
    return PretrainedSSL(model, layers=layers, freeze=freeze).to(device)
