"""``--collect_stats true``: shape files and feature statistics (ESPnet stage 6), and their merge.

For each phase (train, valid) it writes under ``<output_dir>/<phase>/``:

* ``speech_shape``: ``uttid num_samples`` read from the audio header (no decoding);
* ``text_shape``: ``uttid N`` (number of label tokens), when a ``text`` stream is given;
* ``batch_keys`` (the data names, one a line) and ``stats_keys`` (``feats`` or nothing);
* ``feats_stats.npz`` (``count``, ``sum``, ``sum_square``; ESPnet's layout, read by
  ``GlobalMVN``) when the frontend has no trainable parameters (fbank). A learned frontend
  (wav2vec CNN) has no meaningful statistics before training, so none are written.

The utterances are the keys of the first ``--<phase>_shape_file`` when given (ESPnet's
``logdir/<phase>.JOB.scp`` split of wav.scp), else every line of the ``speech`` stream.
:func:`aggregate_stats_dirs` merges the per-job dirs (shape lines concatenated and sorted by
utterance id; npz arrays summed unless ``skip_sum_stats``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from espnet2.data.errors import DataError, Problem
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

_SUPPORTED_TYPES = {"sound", "kaldi_ark"}  # both decoded by espnet2.data.audio


def data_streams(triples: list[list[str]], phase: str) -> dict[str, str]:
    """``{name: path}`` from ``path,name,type`` triples; unsupported types fail clearly."""
    out = {}
    for path, name, kind in triples:
        if name == "speech" and kind not in _SUPPORTED_TYPES:
            raise DataError(Problem(path, None, None, kind, f"{phase} data type '{kind}' is not "
                                    "supported for speech", "format audio as wav/flac files "
                                    "(ssl.sh --audio_format flac) and use type 'sound', or "
                                    "as archives (--audio_format flac.ark), type 'kaldi_ark'"))
        if name not in ("speech", "text"):
            raise DataError(Problem(path, None, None, name, f"unknown data name '{name}'",
                                    "use 'speech' (wav.scp) and optionally 'text' (labels)"))
        out[name] = path
    if "speech" not in out:
        raise DataError(Problem(None, None, None, None, f"no {phase} speech stream",
                                f"pass --{phase}_data_path_and_name_and_type wav.scp,speech,sound"))
    return out


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path) as f:
        f.writelines(line + "\n" for line in lines)


def collect_phase(streams: dict[str, str], keys_file: str | None, out_dir: Path,
                  frontend=None, fs: int | None = None) -> None:
    """Write the shape files (and feats stats when ``frontend`` is given) for one phase."""
    from espnet2.data.audio import audio_info, read_audio
    from espnet2.data.kaldi import read_kv, read_text, write_shape

    wav = read_kv(streams["speech"])
    keys = list(read_kv(keys_file, allow_empty_value=True)) if keys_file else list(wav)
    problems = [Problem(keys_file, None, k, None, "utterance not in " + streams["speech"],
                        "split wav.scp itself to make the key lists") for k in keys if k not in wav]
    if problems:
        raise DataError(problems)
    speech_shape = {k: audio_info(wav[k], utt=k)[0] for k in keys}
    write_shape(out_dir / "speech_shape", speech_shape)
    names = ["speech"]
    if "text" in streams:
        text = read_text(streams["text"])
        missing = [k for k in keys if k not in text]
        if missing:
            raise DataError([Problem(streams["text"], None, k, None, "no label line for this "
                                     "utterance", "regenerate the labels for every utterance "
                                     "in wav.scp") for k in missing])
        write_shape(out_dir / "text_shape", {k: len(text[k]) for k in keys})
        names.append("text")
    stats_keys = []
    if frontend is not None:
        import torch

        count, total, total_sq = 0, None, None
        with torch.no_grad():
            for k in keys:
                wave, _ = read_audio(wav[k], expected_fs=fs, utt=k)
                x = torch.from_numpy(wave)[None]
                feats, lens = frontend(x, torch.tensor([x.size(1)]))
                f = feats[0, : int(lens[0])].double().numpy()  # (T, D)
                count += f.shape[0]
                total = f.sum(0) if total is None else total + f.sum(0)
                total_sq = (f**2).sum(0) if total_sq is None else total_sq + (f**2).sum(0)
        if total is not None:
            with atomic_write(out_dir / "feats_stats.npz", "wb") as fh:
                np.savez(fh, count=np.array(count), sum=total, sum_square=total_sq)
            stats_keys.append("feats")
    _write_lines(out_dir / "batch_keys", names)
    _write_lines(out_dir / "stats_keys", stats_keys)
    logger.info("collect_stats: %d utterances -> %s (%s)", len(keys), out_dir,
                ", ".join(names + stats_keys))


def collect_stats(task, args: argparse.Namespace, dist=None) -> None:
    """Entry point used by ``AbsTask.run_worker`` when ``--collect_stats true`` (rank 0 only:
    ESPnet parallelises stats over jobs with key lists, not over DDP ranks)."""
    if dist is not None and dist.rank != 0:
        return
    frontend, fs = None, None
    if args.frontend is not None:
        from espnet2.tasks.ssl import frontend_choices

        conf = dict(args.frontend_conf)
        fs = task.frontend_fs(args) if hasattr(task, "frontend_fs") else None
        if "fs" in conf:
            conf["fs"] = fs
        frontend = frontend_choices.get_class(args.frontend)(**conf).eval()
        if any(p.requires_grad for p in frontend.parameters()):
            if getattr(args, "normalize", None) == "global_mvn":
                logger.warning("global_mvn with the learned frontend '%s': its features change "
                               "during training, so no feats_stats.npz is written",
                               args.frontend)
            frontend = None
    out = Path(args.output_dir)
    for phase in ("train", "valid"):
        triples = getattr(args, f"{phase}_data_path_and_name_and_type")
        if not triples:
            continue
        shapes = getattr(args, f"{phase}_shape_file")
        collect_phase(data_streams(triples, phase), shapes[0] if shapes else None,
                      out / phase, frontend, fs)


def aggregate_stats_dirs(input_dirs: list[str], output_dir: str,
                         skip_sum_stats: bool = False) -> None:
    """Merge per-job stats dirs into ``output_dir`` (ESPnet ``aggregate_stats_dirs``)."""
    out = Path(output_dir)
    for phase in ("train", "valid"):
        dirs = [Path(d) / phase for d in input_dirs if (Path(d) / phase).is_dir()]
        if not dirs:
            continue
        keys = [(d / "batch_keys").read_text().split() for d in dirs]
        if any(k != keys[0] for k in keys):
            raise DataError(Problem(str(dirs[0] / "batch_keys"), None, None, str(keys),
                                    "stats dirs hold different data streams",
                                    "rerun collect_stats with the same options for every job"))
        for name in keys[0]:
            lines = []
            for d in dirs:
                lines += [ln for ln in (d / f"{name}_shape").read_text().splitlines() if ln]
            lines.sort(key=lambda ln: ln.split(maxsplit=1)[0])
            _write_lines(out / phase / f"{name}_shape", lines)
        _write_lines(out / phase / "batch_keys", keys[0])
        stats_keys = (dirs[0] / "stats_keys").read_text().split()
        _write_lines(out / phase / "stats_keys", [] if skip_sum_stats else stats_keys)
        if skip_sum_stats or not stats_keys:
            continue
        summed: dict[str, np.ndarray] = {}
        for d in dirs:
            with np.load(d / "feats_stats.npz") as s:
                for k in ("count", "sum", "sum_square"):
                    summed[k] = s[k] + summed[k] if k in summed else s[k]
        with atomic_write(out / phase / "feats_stats.npz", "wb") as fh:
            np.savez(fh, **summed)
