"""ESPnet's own whole training job for bench/bench_job.py (same config, same data, same run).

Runs ``<espnet python> -m espnet2.bin.ssl_train`` of an ESPnet venv (e.g. ESPnet 202511 in
``/tmp/espnet_venv``). ESPnet's package is also named ``espnet2``, so the job runs with its
working directory outside this repository and with no ``PYTHONPATH``: nothing of this
repository is importable there. This module itself runs in ``tools/venv`` and never imports
ESPnet; it only writes ESPnet's files and builds its command line and environment.

What differs from our job, and why (everything else is ESPnet's default):

* ``--token_type word`` and a token list with ``<unk>`` appended: ESPnet's default
  preprocessor (``--use_preprocessor true``) tokenizes the label text and requires an unknown
  symbol; labels ``0..K-1`` keep ids ``0..K-1`` and ``<unk>`` (id K) never occurs.
* ``frontend_conf.conv_mode: standard``: required by ESPnet's ``wav2vec_cnn`` frontend.
* ``batch_bins`` one less than ours: ESPnet's numel sampler closes a batch only once it
  *exceeds* ``batch_bins`` (the utterance that overflows stays in it), ours once the next one
  would exceed it; ``bins - 1`` gives both exactly ``batch`` utterances per batch
  (checked: the steps per epoch of both are printed).
* ``--use_matplotlib false`` / ``--use_tensorboard false`` only when the ESPnet venv lacks
  matplotlib / tensorboard (ESPnet does not depend on them; without matplotlib its default
  attention plots would crash). That skips per-epoch work of ESPnet's default job, so it makes
  ESPnet faster, never slower; the bench prints it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

DEFAULT_PYTHON = "/tmp/espnet_venv/bin/python"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
# ``1epoch:train:5-5batch: iter_time=...`` (``--log_interval 1``)
PROGRESS = re.compile(r"(?P<e>\d+)epoch:train:\d+-(?P<b>\d+)batch: ")
PROBE = """\
import importlib.util as u, json
from importlib.metadata import version
print(json.dumps({"espnet": version("espnet"), "torch": version("torch"),
                  "matplotlib": u.find_spec("matplotlib") is not None,
                  "tensorboard": u.find_spec("tensorboard") is not None}))
"""


def default_python() -> str | None:
    return DEFAULT_PYTHON if Path(DEFAULT_PYTHON).exists() else None


def clean_env(one_thread: bool) -> dict[str, str]:
    """The parent's environment without ``PYTHONPATH`` and thread variables; with
    ``one_thread`` the issue's "1 thread" setting ``OMP_NUM_THREADS=MKL_NUM_THREADS=1``."""
    env = {k: v for k, v in os.environ.items()
           if k not in THREAD_VARS and k not in ("PYTHONPATH", "PYTHONHOME")}
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def probe(python: str, cwd: Path) -> dict:
    """ESPnet and torch versions of the venv and whether matplotlib / tensorboard exist there
    (no ESPnet import: that takes ~10 s). ``{"error": ...}`` when the venv is unusable."""
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                              cwd=str(cwd), env=clean_env(True), timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{python}: {e}"}
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"{python} cannot report ESPnet's version (exit {proc.returncode}): "
                         f"{tail}; install ESPnet there (see bench/README.md)"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_token_list(tokens: Path, out: Path) -> Path:
    """Our token list (``0..K-1``, one a line) plus ``<unk>``, as ESPnet's tokenizer needs."""
    out.write_text(tokens.read_text() + "<unk>\n")
    return out


def command(python: str, root: Path, info: dict, data_opts: list[str], shape_opts: list[str],
            output_dir: Path, epochs: int) -> list[str]:
    """ESPnet's ``ssl_train`` command on the same data and config (see :func:`deviations`)."""
    argv = [python, "-m", "espnet2.bin.ssl_train", "--config", str(root / "conf_espnet.yaml"),
            "--token_list", str(root / "tokens_espnet.txt"), "--token_type", "word",
            *data_opts, *shape_opts, "--output_dir", str(output_dir), "--log_interval", "1",
            "--max_epoch", str(epochs)]
    if not info.get("matplotlib"):
        argv += ["--use_matplotlib", "false"]
    if not info.get("tensorboard"):
        argv += ["--use_tensorboard", "false"]
    return argv


def deviations(info: dict) -> list[str]:
    """ESPnet defaults that :func:`command` turns off because the venv lacks a package."""
    notes = []
    if not info.get("matplotlib"):
        notes.append("no matplotlib in the ESPnet venv: --use_matplotlib false (no attention "
                     "plots: ESPnet's default num_att_plot 3 becomes 0, so ESPnet is faster)")
    if not info.get("tensorboard"):
        notes.append("no tensorboard in the ESPnet venv: --use_tensorboard false (ESPnet "
                     "is faster)")
    return notes
