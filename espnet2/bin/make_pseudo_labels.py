"""Make HuBERT pseudo-labels: features -> k-means on train -> frame labels for every set.

Example (iteration 0, MFCC, FSDD)::

    python -m espnet2.bin.make_pseudo_labels --train_dir dump/raw/train \\
        --sets dump/raw/valid dump/raw/test --feature mfcc --n_clusters 100 --portion 1.0 \\
        --seed 0 --km_dir exp/kmeans_iter0_mfcc_km100 --geometry wav2vec_cnn --ref_text text

Flags:
    --train_dir     set dir (``wav.scp`` [+ ``utt2num_samples``]) k-means is fit on.
    --sets          further set dirs, labelled with the SAME train model (fairseq #5453).
    --feature       ``mfcc`` (39-dim, 100 Hz) or ``model`` (block ``--layer`` of the SSL model
                    in ``--model_file``, loaded with ``espnet2.ssl.pretrained``).
    --n_clusters    K (hubert1: 100 for MFCC, 500 for model features).
    --portion       fraction of train utterances k-means sees (hubert1 0.1; FSDD 1.0).
    --km_dir        outputs: ``km_<K>.npy/.json``, ``tokens.txt``,
                    ``<set>/pseudo_labels_km<K>.txt``, ``<set>/quality.json``.
    --geometry      encoder frames: ``wav2vec_cnn`` = (400, 320, 0) or ``rf,stride,pad``.
    --no_dump_text  do not write ``<set_dir>/text`` (default writes it, for training).
    --ref_text      references for label quality: a file, or a file name inside each set dir
                    (read before ``text`` is overwritten): frame labels or one word per utt.
    --nj            processes for MFCC extraction.
    --cmvn          ``none`` (hubert1) or ``utterance``: per-utterance mean/variance
                    normalisation of the features before k-means and assignment (speaker-
                    and channel-normalised clusters; recorded in ``km_<K>.json``).
Exits non-zero listing every problem when the written labels fail validation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from espnet2.data.errors import DataError
from espnet2.labels.assign import (
    kmeans_token_list,
    label_stream,
    write_kmeans_token_list,
    write_label_files,
)
from espnet2.labels.features import (
    ModelLayerFeatures,
    featurize,
    mfcc_geometry,
    utterance_cmvn,
)
from espnet2.labels.kmeans import BACKENDS, fit_kmeans, save_kmeans, select_portion
from espnet2.labels.quality import (
    format_report,
    iter_label_file,
    measure_quality,
    read_ref,
    write_report,
)
from espnet2.labels.validate import iter_lines, parse_geometry, validate_labels

logger = logging.getLogger(__name__)


def read_scp(set_dir: Path) -> list[tuple[str, str]]:
    """``(utt, value)`` pairs of ``<set_dir>/wav.scp``."""
    return [(utt, " ".join(f)) for _, utt, f in iter_lines(set_dir / "wav.scp")]


def _read_refs(ref_text: str | None, set_dirs: list[Path]) -> dict[str, list[str]] | None:
    if not ref_text:
        return None
    if Path(ref_text).is_file():
        return read_ref(ref_text)
    refs: dict[str, list[str]] = {}
    for d in set_dirs:
        if (d / ref_text).is_file():
            refs.update(read_ref(d / ref_text))
    return refs or None


CMVN_CHOICES = ("none", "utterance")


def make_pseudo_labels(
    train_dir: str | Path,
    set_dirs: list[str | Path],
    km_dir: str | Path,
    n_clusters: int,
    feature: str = "mfcc",
    portion: float = 0.1,
    seed: int = 0,
    geometry: str = "wav2vec_cnn",
    fs: int | None = 16000,
    extractor: ModelLayerFeatures | None = None,
    ref_text: str | None = None,
    dump_text: bool = True,
    nj: int = 1,
    tolerance: int = 2,
    hyp_upsample: int = 1,
    cmvn: str = "none",
    **kmeans_kwargs,
) -> dict:
    """Fit on ``train_dir``, label it and every ``set_dirs`` entry; returns quality reports.

    ``extractor`` supplies model-layer features (``feature="model"``); None means MFCC.
    ``kmeans_kwargs`` go to :func:`~espnet2.labels.kmeans.fit_kmeans` (backend, batch_size...).
    """
    if cmvn not in CMVN_CHOICES:
        raise ValueError(f"cmvn={cmvn!r}: choose one of {CMVN_CHOICES}")
    if (feature == "model") != (extractor is not None):
        raise ValueError(
            "feature='model' needs extractor=ModelLayerFeatures(...); feature='mfcc' takes none"
        )
    km_dir, dst = Path(km_dir), parse_geometry(geometry)
    dirs = [Path(train_dir)] + [Path(d) for d in set_dirs]
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"set dirs must have distinct names, got {names}")
    refs = _read_refs(ref_text, dirs)
    train = read_scp(dirs[0])
    keep = set(select_portion([u for u, _ in train], portion, seed))
    subset = [item for item in train if item[0] in keep]
    logger.info(
        "k-means on %d of %d train utterances (portion %s)", len(subset), len(train), portion
    )

    def features(items):
        for utt, x, n, rate in featurize(items, extractor, fs, nj):
            yield utt, (utterance_cmvn(x) if cmvn == "utterance" else x), n, rate

    def stream():
        return (x for _, x, _, _ in features(subset))

    meta = dict(
        feature=feature,
        layer=getattr(extractor, "layer", None),
        portion=portion,
        cmvn=cmvn,
        fs=fs,
        train_dir=str(dirs[0]),
        train_utts=len(subset),
        geometry=[dst.receptive_field, dst.stride, dst.pad],
    )
    model = fit_kmeans(stream, n_clusters, seed=seed, meta=meta, **kmeans_kwargs)
    save_kmeans(model, km_dir)
    write_kmeans_token_list(km_dir / "tokens.txt", n_clusters)
    problems, reports = [], {}
    for d in dirs:  # every set with the TRAIN model (fairseq #5453)
        out = km_dir / d.name / f"pseudo_labels_km{n_clusters}.txt"
        feats = features(read_scp(d))
        src = mfcc_geometry if extractor is None else None
        labels = label_stream(feats, model, dst, src, device=kmeans_kwargs.get("device"))
        stats = write_label_files(labels, [out] + ([d / "text"] if dump_text else []))
        logger.info("set %s: %s -> %s", d.name, stats, out)
        problems += validate_labels(
            d, out, kmeans_token_list(n_clusters), dst, num_classes=n_clusters, tolerance=tolerance
        )
        if refs:
            reports[d.name] = measure_quality(iter_label_file(out), refs, hyp_upsample=hyp_upsample)
            write_report(reports[d.name], km_dir / d.name / "quality.json")
            print(format_report(reports[d.name], d.name))
    if problems:
        raise DataError(problems)
    return reports


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train_dir", required=True)
    p.add_argument("--sets", nargs="*", default=[])
    p.add_argument("--feature", choices=["mfcc", "model"], default="mfcc")
    p.add_argument("--model_file", help="SSL checkpoint for --feature model")
    p.add_argument("--layer", type=int, default=6, help="block index for --feature model")
    p.add_argument("--n_clusters", type=int, required=True)
    p.add_argument("--portion", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--km_dir", required=True)
    p.add_argument("--geometry", default="wav2vec_cnn")
    p.add_argument("--fs", type=int, default=16000, help="expected sampling rate (Hz)")
    p.add_argument("--ref_text", default=None)
    p.add_argument("--hyp_upsample", type=int, default=1)
    p.add_argument("--no_dump_text", action="store_true")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--cmvn", choices=CMVN_CHOICES, default="none")
    p.add_argument("--tolerance", type=int, default=2)
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--batch_size", type=int, default=10000)
    p.add_argument("--max_passes", type=int, default=20)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    return p


def _load_extractor(args) -> ModelLayerFeatures | None:
    if args.feature == "mfcc":
        return None
    if not args.model_file:
        raise SystemExit("--feature model needs --model_file (an ssl_train checkpoint)")
    from espnet2.ssl import pretrained  # loaded only for iteration >= 1

    return ModelLayerFeatures(
        lambda: pretrained.load_model(args.model_file)[0], args.layer, args.device
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = get_parser().parse_args(argv)
    try:
        make_pseudo_labels(
            args.train_dir,
            args.sets,
            args.km_dir,
            args.n_clusters,
            feature=args.feature,
            portion=args.portion,
            seed=args.seed,
            geometry=args.geometry,
            fs=args.fs,
            extractor=_load_extractor(args),
            ref_text=args.ref_text,
            dump_text=not args.no_dump_text,
            nj=args.nj,
            tolerance=args.tolerance,
            hyp_upsample=args.hyp_upsample,
            cmvn=args.cmvn,
            backend=args.backend,
            batch_size=args.batch_size,
            max_passes=args.max_passes,
            device=args.device,
        )
    except DataError as e:
        print(f"make_pseudo_labels: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
