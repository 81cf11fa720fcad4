"""Benchmark: index a 1,000,000-utterance wav.scp + speech_shape and build numel batches.

Targets: < 20 s and < 1.5 GB peak RSS. Each variant runs in its own process so its
peak RSS (``ru_maxrss``) is its own; the baseline is a bare
``dict(line.split(maxsplit=1) for line in f)`` over both files.

    tools/venv/bin/python bench/bench_index.py [--num_utts N] [--output bench/results/index.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

TARGET_S = 20.0
TARGET_GB = 1.5


def make_files(d: str, n: int) -> None:
    import numpy as np

    lengths = np.random.default_rng(0).integers(16_000, 320_000, n)
    with open(os.path.join(d, "wav.scp"), "w") as f:
        f.writelines(f"utt{i:07d} /data/corpus/spk{i % 1000:04d}/utt{i:07d}.flac\n"
                     for i in range(n))
    with open(os.path.join(d, "speech_shape"), "w") as f:
        f.writelines(f"utt{i:07d} {int(x)}\n" for i, x in enumerate(lengths))


def run_baseline(d: str) -> dict:
    t0 = time.perf_counter()
    with open(os.path.join(d, "wav.scp")) as f:
        wav = dict(line.split(maxsplit=1) for line in f)
    with open(os.path.join(d, "speech_shape")) as f:
        shape = dict(line.split(maxsplit=1) for line in f)
    return {"seconds": time.perf_counter() - t0, "utts": len(wav), "shapes": len(shape)}


def run_ours(d: str) -> dict:
    from espnet2.data.kaldi import read_kv, read_shape
    from espnet2.data.samplers import build_batches, padding_fraction

    t0 = time.perf_counter()
    wav = read_kv(os.path.join(d, "wav.scp"))
    shape = read_shape(os.path.join(d, "speech_shape"))
    t_read = time.perf_counter() - t0
    lengths = {k: v[0] for k, v in shape.items()}
    batches = build_batches("numel", lengths, batch_bins=16_000 * 400, min_batch_size=1)
    total = time.perf_counter() - t0
    return {"seconds": total, "read_seconds": t_read, "utts": len(wav),
            "batches": len(batches), "padding": padding_fraction(batches, lengths)}


def child(mode: str, d: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = run_baseline(d) if mode == "baseline" else run_ours(d)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(res))


def measure(mode: str, d: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", d],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_utts", type=int, default=1_000_000)
    p.add_argument("--output", default=None, help="also write a markdown report here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.dir)
        return
    with tempfile.TemporaryDirectory() as d:
        make_files(d, args.num_utts)
        base, ours = measure("baseline", d), measure("ours", d)
    ok = ours["seconds"] < TARGET_S and ours["peak_rss_gb"] < TARGET_GB
    lines = [
        f"num_utts: {args.num_utts}",
        f"baseline dict(line.split(maxsplit=1)) both files: {base['seconds']:.2f} s, "
        f"peak RSS {base['peak_rss_gb']:.3f} GB",
        f"ours read_kv + read_shape: {ours['read_seconds']:.2f} s; + numel batches "
        f"({ours['batches']} batches, padding {ours['padding']:.4f}): {ours['seconds']:.2f} s, "
        f"peak RSS {ours['peak_rss_gb']:.3f} GB",
        f"ratio to baseline: time x{ours['seconds'] / base['seconds']:.2f} "
        f"(reading only x{ours['read_seconds'] / base['seconds']:.2f}), "
        f"RSS x{ours['peak_rss_gb'] / base['peak_rss_gb']:.2f}",
        f"targets (< {TARGET_S:.0f} s, < {TARGET_GB} GB): {'PASS' if ok else 'FAIL'}",
    ]
    print("\n".join(lines))
    if args.output:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from espnet2.utils.fileio import atomic_write

        machine = f"{platform.machine()}, {os.cpu_count()} vCPU, Python {platform.python_version()}"
        with atomic_write(args.output) as f:
            f.write("# Indexing benchmark (bench/bench_index.py)\n\n")
            f.write(f"Command: `{' '.join([os.path.relpath(sys.executable), *sys.argv])}`\n\n")
            f.write(f"Machine: {machine} ({platform.platform()})\n\n")
            f.write("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
