"""Benchmark k-means fit + assign on synthetic 39-dim frames (MFCC-like), per backend.

    tools/venv/bin/python bench/bench_kmeans.py --frames 1000000 --n_clusters 100 \\
        --backends torch sklearn faiss --out bench/results/kmeans.md

Each backend runs in its own process (so peak RSS is its own). The data are a mixture of
``2 * K`` Gaussians generated chunk by chunk from a seed (never a full matrix, unless the
backend caches it: ``--cache_frames``). Reported: fit time, frames/s (frames x passes / s),
assign frames/s (one pass with the final centroids), mean squared distance (inertia / N) on
all frames, peak RSS. Same init sample, batch size and pass budget for torch and sklearn.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

DIM = 39
CHUNK = 5000  # frames per streamed "utterance group"


def make_stream(n_frames: int, k: int, seed: int = 0):
    """Re-iterable stream of (CHUNK, 39) float32 arrays from a fixed Gaussian mixture."""
    centers = np.random.default_rng(seed).normal(size=(2 * k, DIM)).astype(np.float32) * 3

    def stream():
        for i, start in enumerate(range(0, n_frames, CHUNK)):
            rng = np.random.default_rng((seed, i))
            n = min(CHUNK, n_frames - start)
            yield centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, DIM)).astype(
                np.float32
            )

    return stream


def run_one(args) -> dict:
    torch.set_num_threads(args.threads)
    from espnet2.labels.kmeans import fit_kmeans, nearest_centroid

    stream = make_stream(args.frames, args.n_clusters)
    t0 = time.perf_counter()
    model = fit_kmeans(
        stream,
        args.n_clusters,
        seed=0,
        batch_size=args.batch_size,
        max_passes=args.passes,
        tol=0.0,
        backend=args.one,
        cache_frames=args.cache_frames,
        n_init=1,
    )
    fit_s = time.perf_counter() - t0
    c = torch.from_numpy(model.centroids)
    t0 = time.perf_counter()
    total = 0.0
    for x in stream():
        total += float(nearest_centroid(torch.from_numpy(x), c, return_dist=True)[1].sum())
    assign_s = time.perf_counter() - t0
    passes = model.meta["passes"]
    return {
        "backend": args.one,
        "fit_s": round(fit_s, 2),
        "passes": passes,
        "fit_frames_per_s": round(args.frames * passes / fit_s),
        "assign_frames_per_s": round(args.frames / assign_s),
        "mse": round(total / args.frames, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def to_markdown(args, rows: list[dict]) -> str:
    head = (
        "| backend | fit s | passes | fit frames/s | assign frames/s | MSE (inertia/N) "
        "| peak RSS MB |\n|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['backend']} | {r['fit_s']} | {r['passes']} | {r['fit_frames_per_s']:,} | "
        f"{r['assign_frames_per_s']:,} | {r['mse']} | {r['peak_rss_mb']} |\n"
        for r in rows
    )
    cmd = " ".join(["tools/venv/bin/python", "bench/bench_kmeans.py", *sys.argv[1:]])
    return (
        f"### {args.frames:,} frames x {DIM} dims, K={args.n_clusters}, batch "
        f"{args.batch_size}, {args.passes} passes, cache_frames={args.cache_frames}, "
        f"{args.threads} thread(s), {platform.processor() or platform.machine()}\n\n"
        f"`{cmd}`\n\n{head}{body}\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=1_000_000)
    p.add_argument("--n_clusters", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=10000)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--cache_frames", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backends", nargs="+", default=["torch", "sklearn", "faiss"])
    p.add_argument("--out", default=None, help="append a markdown table here")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    t0 = time.perf_counter()
    n = sum(len(x) for x in make_stream(args.frames, args.n_clusters)())
    gen_rate = round(n / (time.perf_counter() - t0))
    print(f"generating the stream alone: {gen_rate:,} frames/s", flush=True)
    rows = []
    for backend in args.backends:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--one", backend]
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"},
        )
        if res.returncode:
            print(f"{backend} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    md = to_markdown(args, rows) + f"Generating the stream alone: {gen_rate:,} frames/s.\n\n"
    print(md)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(md)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
