"""Benchmark: the data pipeline alone (dataset + sampler + collate) and padding of numel batches.

1. loader: batches/s of ``EpochLoader(SSLDataset, numel batches, SSLCollate)`` over synthetic
   16 kHz wav files (batch 8 x ~1.2 s, labels), with the task's default ``--num_workers 1``
   and with 0 workers, against the tiny HuBERT training step's consumption rate measured in
   the same process (bare loop, 1 thread). Ratio > 1 means the loader keeps up.
2. padding: padded fraction of samples with ``numel`` bucketing on the FSDD lengths
   (``utterances.tsv`` num_samples), vs ``unsorted`` batches of the same mean size
   (file order, ESPnet's ``unsorted``) as the baseline. Target < 10 %.

    tools/venv/bin/python bench/bench_data.py [--smoke] [--output bench/results/data.md]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import common  # noqa: E402
from bench.models import FS, BareLoop, build_model, config, make_batches  # noqa: E402

FSDD_TSV = Path("/work/shared/data/fsdd/utterances.tsv")
TARGET_PADDING = 0.10


def write_corpus(d: Path, n_utts: int, seconds: float, num_classes: int, geometry) -> dict:
    """Synthetic 16 kHz wavs (lengths uniform in [0.8, 1.6] x ``seconds``), text, tokens."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    lengths = {}
    with open(d / "wav.scp", "w") as scp, open(d / "text", "w") as text:
        for i in range(n_utts):
            utt = f"utt{i:05d}"
            n = int(rng.uniform(0.8, 1.6) * seconds * FS)
            path = d / f"{utt}.wav"
            sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), FS,
                     subtype="PCM_16")
            scp.write(f"{utt} {path}\n")
            labels = rng.integers(0, num_classes, geometry.num_frames(n))
            text.write(f"{utt} {' '.join(map(str, labels))}\n")
            lengths[utt] = n
    (d / "tokens.txt").write_text("".join(f"{i}\n" for i in range(num_classes)))
    return lengths


def loader_rate(d: Path, lengths: dict, cfg: dict, geometry, workers: int, epochs: int) -> float:
    from espnet2.data.collate import SSLCollate
    from espnet2.data.dataset import SSLDataset
    from espnet2.data.loader import EpochLoader
    from espnet2.data.samplers import build_batches

    ds = SSLDataset(str(d / "wav.scp"), str(d / "text"), str(d / "tokens.txt"), fs=FS)
    bins = int(cfg["batch"] * cfg["seconds"] * FS * 1.6)
    batches = build_batches("numel", lengths, batch_bins=bins)
    loader = EpochLoader(ds, batches, SSLCollate(geometry), num_workers=workers)
    n = 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for _ in loader.iterate(epoch):
            n += 1
    return n / (time.perf_counter() - t0)


def section_loader(cfg: dict, smoke: bool) -> list[str]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg)
    geometry = model.frontend.frame_geometry()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lengths = write_corpus(d, 16 if smoke else 160, cfg["seconds"], cfg["classes"], geometry)
        rates = {}
        step = BareLoop(model, make_batches(model, cfg, 2))
        step()
        epochs = 1 if smoke else 2
        # interleave: step rate, loaders, step rate again (noise on a shared machine)
        t_steps = [common.timed(step) for _ in range(2 if smoke else 4)]
        for workers in (1, 0):
            rates[f"loader_w{workers}"] = loader_rate(d, lengths, cfg, geometry, workers, epochs)
        t_steps += [common.timed(step) for _ in range(2 if smoke else 4)]
    step_rate = 1.0 / common.median(t_steps)
    lines.append(f"[loader] synthetic 16 kHz wavs, numel batches of ~{cfg['batch']} x "
                 f"~{cfg['seconds']} s, SSLCollate crop; {epochs} epoch(s) per setting")
    lines.append(f"  train step (bare loop, 1 thread): {step_rate:.2f} batches/s")
    for k, v in rates.items():
        lines.append(f"  {k}: {v:.2f} batches/s")
    for k, v in rates.items():
        lines.append(f"ratio {k}/train_step (batches/s): x{v / step_rate:.2f}")
    return lines


def fsdd_lengths(limit: int | None = None) -> dict[str, int]:
    with open(FSDD_TSV, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = {r["utt_id"]: int(r["num_samples"]) for r in rows}
    if limit:
        out = dict(list(out.items())[:limit])
    return out


def section_padding(smoke: bool) -> list[str]:
    from espnet2.data.samplers import build_batches, padding_fraction

    if not FSDD_TSV.exists():
        return [f"[padding] skipped: {FSDD_TSV} not found"]
    lengths = fsdd_lengths(300 if smoke else None)
    vals = np.array(list(lengths.values()))
    lines = [f"[padding] FSDD: {len(lengths)} utterances, num_samples median {np.median(vals):.0f}"
             f", min {vals.min()}, max {vals.max()} (8 kHz)"]
    for per_batch in (8, 32, 128):
        bins = int(per_batch * np.median(vals))
        numel = build_batches("numel", lengths, batch_bins=bins)
        mean_bs = len(lengths) / len(numel)
        unsorted = build_batches("unsorted", lengths, batch_size=max(1, round(mean_bs)))
        p_numel = padding_fraction(numel, lengths)
        p_unsorted = padding_fraction(unsorted, lengths)
        verdict = "PASS" if p_numel < TARGET_PADDING else "FAIL"
        lines.append(f"  batch_bins={bins} ({len(numel)} batches, mean {mean_bs:.1f} utts): "
                     f"numel padding {p_numel:.4f} [{verdict} < {TARGET_PADDING}], unsorted "
                     f"(batch_size {round(mean_bs)}) {p_unsorted:.4f}")
        lines.append(f"ratio padding numel/unsorted bins={bins}: "
                     f"x{p_numel / max(p_unsorted, 1e-12):.3f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny dims, few utterances (tests)")
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    args = p.parse_args(argv)
    cfg = config(args.smoke)
    out = [common.machine_line()]
    print(out[0], flush=True)
    for section in (lambda: section_padding(args.smoke), lambda: section_loader(cfg, args.smoke)):
        lines = section()
        print("\n".join(lines), flush=True)
        out += lines
    if args.output:
        cmd = "tools/venv/bin/python bench/bench_data.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "Data pipeline benchmark (bench/bench_data.py)",
                             cmd.strip(), out)


if __name__ == "__main__":
    main()
