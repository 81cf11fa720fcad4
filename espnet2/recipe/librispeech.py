"""LibriSpeech (OpenSLR 12) download and Kaldi data dirs for egs2/librispeech/ssl1.

Layout of a part: ``LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and
``<speaker>-<chapter>.trans.txt`` (``utt-id TRANSCRIPT``). Kaldi speaker = ``speaker-chapter``.
Sets: ``train_960`` = the three training parts, ``dev`` = dev-clean + dev-other, and
``test_clean``, ``test_other``, ``dev_clean``, ``dev_other``.
"""

from __future__ import annotations

import logging
import tarfile
import urllib.request
from pathlib import Path

from espnet2.recipe import datadir

logger = logging.getLogger(__name__)

URL = "https://www.openslr.org/resources/12/{part}.tar.gz"
TRAIN_PARTS = ("train-clean-100", "train-clean-360", "train-other-500")
EVAL_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other")


def download(part: str, dest: str | Path) -> Path:
    """Download and unpack one part under ``dest`` (skipped when already unpacked)."""
    dest = Path(dest)
    out = dest / "LibriSpeech" / part
    if out.is_dir():
        return out
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{part}.tar.gz"
    if not archive.is_file():
        logger.info("downloading %s", URL.format(part=part))
        tmp = archive.with_suffix(".part")
        urllib.request.urlretrieve(URL.format(part=part), tmp)
        tmp.rename(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return out


def prepare_part(part_dir: str | Path, out: str | Path) -> int:
    """Kaldi dir (``wav.scp`` pointing at the flac files, ``text``, ``utt2spk``) of one part."""
    part_dir = Path(part_dir)
    wav, text, spk = {}, {}, {}
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, words = line.partition(" ")
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise FileNotFoundError(f"{trans}: {utt} has no {flac}; re-download the part")
            wav[utt] = str(flac.resolve())
            text[utt] = words
            spk[utt] = "-".join(utt.split("-")[:2])
    if not wav:
        raise FileNotFoundError(f"{part_dir}: no */*/*.trans.txt; is this a LibriSpeech part?")
    datadir.write_dir(Path(out), {"wav.scp": wav, "text": text, "utt2spk": spk})
    return len(wav)


def prepare(
    root: str | Path,
    data_dir: str | Path,
    parts: tuple[str, ...],
    download_dir: str | Path | None = None,
) -> None:
    """``data/<part_with_underscores>`` per part, then ``train_960`` and ``dev`` when complete."""
    data_dir = Path(data_dir)
    for part in parts:
        src = Path(root) / part
        if not src.is_dir():
            if download_dir is None:
                raise FileNotFoundError(f"{src} is missing; pass --download_dir to fetch it")
            src = download(part, download_dir)
        n = prepare_part(src, data_dir / part.replace("-", "_"))
        logger.info("%s: %d utterances", part, n)
    names = [p.replace("-", "_") for p in parts]
    for combined, members in (("train_960", TRAIN_PARTS), ("dev", ("dev-clean", "dev-other"))):
        if all(m in parts for m in members):
            datadir.combine_data_dirs(
                data_dir / combined, [data_dir / m.replace("-", "_") for m in members]
            )
    logger.info("prepared %s", names)
