"""Free Spoken Digit Dataset (FSDD) preparation: Kaldi data dirs with speaker-disjoint sets.

Corpus: ``recordings/{digit}_{speaker}_{take}.wav`` (8 kHz mono, 6 speakers x 10 digits x 50
takes), optionally ``utterances.tsv``. Utterance ids are ``{speaker}_{digit}_{take:02d}``.

Sets: ``train`` and ``valid`` (the pre-training speakers; valid = the first ``valid_takes``
takes of each digit), ``test`` (held-out speakers, for probing only). ``text`` holds the
digit: the utterance-level label of the probe, not an SSL target.
"""

from __future__ import annotations

import csv
import logging
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from espnet2.recipe import datadir

logger = logging.getLogger(__name__)

RELEASE_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
)
TEST_SPEAKERS = ("theo", "yweweler")


@dataclass(frozen=True)
class Recording:
    utt: str
    path: Path
    speaker: str
    digit: str
    take: int


def list_recordings(root: str | Path) -> list[Recording]:
    """All recordings of an FSDD copy (from ``utterances.tsv`` when present, else file names)."""
    root = Path(root)
    tsv = root / "utterances.tsv"
    out = []
    if tsv.is_file():
        with open(tsv, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out.append(
                    Recording(
                        row["utt_id"],
                        (root / row["path"]).resolve(),
                        row["speaker"],
                        row["digit"],
                        int(row["index"]),
                    )
                )
    else:
        for wav in sorted((root / "recordings").glob("*.wav")):
            parts = wav.stem.split("_")
            if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
                raise ValueError(
                    f"{wav}: not an FSDD name {{digit}}_{{speaker}}_{{take}}.wav; "
                    "remove foreign files from recordings/"
                )
            digit, speaker, take = parts[0], parts[1], int(parts[2])
            out.append(
                Recording(f"{speaker}_{digit}_{take:02d}", wav.resolve(), speaker, digit, take)
            )
    if not out:
        raise FileNotFoundError(f"{root}: no recordings/*.wav; pass the FSDD root (--fsdd_root)")
    return sorted(out, key=lambda r: r.utt)


def download(dest: str | Path) -> Path:
    """Download and unpack the public v1.0.10 release under ``dest`` (once); returns its root."""
    dest = Path(dest)
    root = dest / "free-spoken-digit-dataset-1.0.10"
    if (root / "recordings").is_dir():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "fsdd-v1.0.10.tar.gz"
    if not archive.is_file():
        logger.info("downloading %s", RELEASE_URL)
        tmp = archive.with_suffix(".part")
        urllib.request.urlretrieve(RELEASE_URL, tmp)
        tmp.rename(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return root


def split_sets(
    recs: list[Recording],
    test_speakers: tuple[str, ...] = TEST_SPEAKERS,
    valid_takes: int = 5,
    subset: int | None = None,
) -> dict[str, list[Recording]]:
    """{"train", "valid", "test"}: speaker-disjoint; ``subset`` keeps takes ``< subset``."""
    speakers = sorted({r.speaker for r in recs})
    unknown = [s for s in test_speakers if s not in speakers]
    if unknown or len(set(test_speakers)) >= len(speakers):
        raise ValueError(
            f"test speakers {list(test_speakers)} must be a proper subset of "
            f"the corpus speakers {speakers}"
        )
    if subset is not None:
        recs = [r for r in recs if r.take < subset]
        valid_takes = max(1, min(valid_takes, subset // 5))
    sets: dict[str, list[Recording]] = {"train": [], "valid": [], "test": []}
    for r in recs:
        if r.speaker in test_speakers:
            sets["test"].append(r)
        else:
            sets["valid" if r.take < valid_takes else "train"].append(r)
    return sets


def write_sets(sets: dict[str, list[Recording]], data_dir: str | Path) -> None:
    """Write ``data_dir/<set>/{wav.scp,utt2spk,spk2utt,text}``."""
    for name, recs in sets.items():
        files = {
            "wav.scp": {r.utt: str(r.path) for r in recs},
            "utt2spk": {r.utt: r.speaker for r in recs},
            "text": {r.utt: r.digit for r in recs},
        }
        datadir.write_dir(Path(data_dir) / name, files)
        logger.info(
            "%s/%s: %d utterances, speakers %s",
            data_dir,
            name,
            len(recs),
            sorted({r.speaker for r in recs}),
        )


def prepare(
    fsdd_root: str | Path | None,
    data_dir: str | Path,
    download_dir: str | Path,
    test_speakers: tuple[str, ...] = TEST_SPEAKERS,
    valid_takes: int = 5,
    subset: int | None = None,
) -> dict[str, int]:
    """Build the Kaldi dirs from a local copy (or the downloaded release); returns set sizes."""
    root = Path(fsdd_root) if fsdd_root else download(download_dir)
    sets = split_sets(list_recordings(root), test_speakers, valid_takes, subset)
    write_sets(sets, data_dir)
    return {k: len(v) for k, v in sets.items()}
