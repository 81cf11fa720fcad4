"""Pack a trained SSL model for downstream use: one zip with everything needed to reload it.

    python -m espnet2.bin.pack_ssl --exp_dir exp/ssl_train_hubert_raw \
        [--model_file valid.loss.ave.pth] [--kmeans_model exp/kmeans/km_100.pt] \
        --outpath exp/ssl_train_hubert_raw/packed.zip

Archive: ``config.yaml`` (token_list pointing inside the archive), ``model.pth``, ``tokens.txt``
(when the config has a token list), the k-means model and ``probe/probe.json`` when given.
Reload with ``espnet2.ssl.pretrained.load_pretrained(<zip>)``.
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from pathlib import Path

import yaml

from espnet2.utils.fileio import atomic_write


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path)
    p.add_argument("--model_file", default=None, help="default: the best available model file")
    p.add_argument("--kmeans_model", default=None, type=Path, help="k-means model to include")
    p.add_argument("--option", action="append", default=[], type=Path, help="extra files")
    p.add_argument("--outpath", required=True, type=Path)
    return p


def pack(
    exp_dir: Path,
    outpath: Path,
    model_file: str | None = None,
    kmeans_model: Path | None = None,
    extra: list[Path] = (),
) -> Path:
    from espnet2.ssl.pretrained import resolve_model_file

    mfile = resolve_model_file(exp_dir, model_file)
    with open(exp_dir / "config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    files: dict[str, Path] = {"model.pth": mfile}
    if config.get("token_list"):
        files["tokens.txt"] = Path(config["token_list"])
        config["token_list"] = "tokens.txt"  # resolved against the unpacked dir by the loader
    if kmeans_model is not None:
        files[f"kmeans/{kmeans_model.name}"] = kmeans_model
        meta = kmeans_model.with_suffix(".json")  # save_kmeans writes km_<K>.npy + km_<K>.json
        if meta.exists():
            files[f"kmeans/{meta.name}"] = meta
    for p in extra:
        files[f"extra/{p.name}"] = p
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"cannot pack: missing {missing}")
    with atomic_write(outpath, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("config.yaml", yaml.safe_dump(config, sort_keys=False))
        for name, path in files.items():
            zf.write(path, name)
    return outpath


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = pack(args.exp_dir, args.outpath, args.model_file, args.kmeans_model, args.option)
    logging.info("packed %s", out)


if __name__ == "__main__":
    main()
