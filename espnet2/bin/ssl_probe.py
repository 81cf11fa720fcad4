"""Frozen-feature probes of pre-trained SSL models (stage 8 of the ssl1 recipe).

    python -m espnet2.bin.ssl_probe --exp_dir exp/ssl_train_hubert_raw [--exp_dir ...] \
        --train_dir dump/raw/train --train_labels data/train/text \
        --test_dir dump/raw/test --test_labels data/test/text --output_dir exp/probe

For every experiment: the pre-trained encoder and the same encoder with random weights (the
weights its training run started from: built after seeding with the run's ``seed`` from
``config.yaml``); plus MFCC13 mean and MFCC39 mean+std baselines; same splits and classifier
for all.
Writes ``probe.json`` and ``probe.md`` (table) to ``--output_dir``: every probe's accuracy
(overall and per held-out speaker) and test predictions, and for each pair of selected probes
the paired difference with its 95% interval (bootstrap over test utterances) and exact McNemar
p (``espnet2.eval.significance``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet2.ssl.pretrained import setup_cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--exp_dir", action="append", required=True, help="repeat for several models")
    p.add_argument("--model_file", default=None, help="model file name inside each exp_dir")
    p.add_argument("--train_dir", required=True, type=Path, help="probe-train data dir")
    p.add_argument("--train_labels", required=True, type=Path, help="utt -> class (e.g. digit)")
    p.add_argument("--test_dir", required=True, type=Path, help="held-out speakers")
    p.add_argument("--test_labels", required=True, type=Path)
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--tasks", nargs="+", default=["digit", "speaker"])
    p.add_argument("--valid_speaker", default=None,
                   help="the one validation speaker (default: leave-one-speaker-out over all "
                   "probe-train speakers)")
    p.add_argument("--no_baselines", action="store_true", help="skip MFCC and random-init rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=300, help="probe optimisation steps")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument(
        "--pooling",
        choices=["mean", "meanstd"],
        default="mean",
        help="SSL layer pooling over frames: mean, or mean+std (like the MFCC39 baseline)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def build_feature_sets(args, device: str) -> dict:
    from espnet2.eval.pooling import pooled_layer_features, pooled_mfcc
    from espnet2.labels.features import mfcc_features
    from espnet2.ssl.pretrained import build_initial_model, load_model

    sets = {}
    for exp in args.exp_dir:
        model, config, exp_dir = load_model(exp, args.model_file, device)
        name = Path(exp_dir).name
        sets[name] = _ssl_features(model, args, device, pooled_layer_features)
        if not args.no_baselines:
            rand = build_initial_model(config).to(device).eval()  # the run's starting point
            sets[f"{name}_random_init"] = _ssl_features(rand, args, device, pooled_layer_features)
    if not args.no_baselines:
        for kind in ("mfcc13_mean", "mfcc39_meanstd"):
            sets[kind] = lambda waves, k=kind: pooled_mfcc(mfcc_features, waves, args.fs, k)
    return sets


def _ssl_features(model, args, device, pooled):
    def fn(waves):
        return pooled(model.extract_features, waves, args.batch_size, device, args.pooling)

    return fn


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    device = setup_cli(args.num_threads, args.device)
    from espnet2.eval.probe import ProbeConfig
    from espnet2.eval.run_probe import format_table, load_probe_set, run_probe_suite, write_report

    train = load_probe_set(args.train_dir, args.train_labels, args.fs)
    test = load_probe_set(args.test_dir, args.test_labels, args.fs)
    report = run_probe_suite(
        train,
        test,
        build_feature_sets(args, device),
        ProbeConfig(epochs=args.epochs, seed=args.seed),
        valid_speaker=args.valid_speaker,
        tasks=tuple(args.tasks),
    )
    write_report(report, args.output_dir)
    print(format_table(report), end="")


if __name__ == "__main__":
    main()
