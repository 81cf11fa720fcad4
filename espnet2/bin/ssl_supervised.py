"""Supervised reference for the probes: train an SSL run's encoder on the probe labels.

    python -m espnet2.bin.ssl_supervised --exp_dir exp/ssl_train_hubert_raw \
        --train_dir dump/raw/train_sp --train_labels data/train_sp/text \
        --output_dir exp/supervised_hubert_seed0 --seed 0 --epochs 3
    python -m espnet2.bin.ssl_probe --exp_dir exp/supervised_hubert_seed0 --tasks digit ...

Builds the encoder of ``<exp_dir>/config.yaml`` from the weights a run with ``--seed`` starts
from, trains it end to end on ``--train_labels`` (``espnet2.eval.supervised``), and writes an
experiment dir that ``ssl_probe`` / ``ssl_extract`` / ``load_pretrained`` read like any other:
``config.yaml`` (with ``seed``, so the probe's random-init row is this run's start) and
``supervised.pth``, plus ``supervised.json`` (classes, per-epoch losses, options).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import yaml

from espnet2.ssl.pretrained import setup_cli
from espnet2.utils.fileio import atomic_save_torch, atomic_write


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path, help="an ssl_train run (its config)")
    p.add_argument("--train_dir", required=True, type=Path, help="data dir with wav.scp, utt2spk")
    p.add_argument("--train_labels", required=True, type=Path, help="utt -> class (e.g. digit)")
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    setup_cli(args.num_threads, "cpu")
    from espnet2.eval.run_probe import load_probe_set
    from espnet2.eval.supervised import train_supervised
    from espnet2.ssl.pretrained import build_initial_model

    cfg_path = args.exp_dir / "config.yaml"
    if not cfg_path.exists():
        raise SystemExit(f"ssl_supervised: {cfg_path} not found: pass an ssl_train experiment dir")
    config = {**yaml.safe_load(cfg_path.read_text(encoding="utf-8")), "seed": args.seed}
    data = load_probe_set(args.train_dir, args.train_labels, args.fs)
    classes = sorted(set(data.labels.tolist()))
    labels = np.array([classes.index(v) for v in data.labels])
    model = build_initial_model(config)
    losses = train_supervised(model, data.waves, labels, len(classes), args.epochs,
                              args.batch_size, args.lr, args.seed)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.yaml") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    atomic_save_torch(model.state_dict(), out / "supervised.pth")
    info = {"classes": classes, "epoch_losses": losses, "source": str(args.exp_dir),
            "options": {k: str(v) for k, v in vars(args).items()}}
    with atomic_write(out / "supervised.json") as f:
        json.dump(info, f, indent=1)
    logging.info("wrote %s (probe it with ssl_probe --exp_dir %s)", out / "supervised.pth", out)


if __name__ == "__main__":
    main()
