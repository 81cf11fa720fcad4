"""Benchmark: resident memory over 2,000 tiny training steps (leak / drift detector).

Two variants, each in its own process (so each RSS curve is its own): the Trainer
(``espnet2.train.trainer.Trainer``, two epochs with validation, checkpoints and the default
reporter/TensorBoard output) and, as the baseline, a bare PyTorch loop over the same model
and batches. RSS is sampled every step; drift = median RSS of the last quarter of the steps
over the median of the first quarter (1.000 = flat). The tiny model is width 32, so the run
takes about 1-2 minutes on one core.

    tools/venv/bin/python bench/bench_rss_drift.py [--steps 2000] [--smoke] [--output ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench import common  # noqa: E402
from bench.models import BareLoop, build_model, make_batches  # noqa: E402

DRIFT_CFG = {"channels": 32, "layers": 3, "dim": 32, "heads": 2, "ffn": 64, "blocks": 2,
             "classes": 16, "final_dim": 16, "batch": 4, "seconds": 0.25, "mask_length": 2}
HERE = Path(__file__).resolve()


class SamplingLoader:
    """Trainer loader protocol over a fixed batch list; samples RSS at every batch taken."""

    def __init__(self, batches: list[dict], n: int, samples: list[float] | None):
        self.batches, self.n, self.samples = batches, n, samples

    def num_batches(self, epoch: int) -> int:
        return self.n

    def iterate(self, epoch: int, start_batch: int = 0):
        for i in range(start_batch, self.n):
            if self.samples is not None:
                self.samples.append(common.rss_mb())
            yield dict(self.batches[(i * 7 + epoch) % len(self.batches)])


def drift(samples: list[float]) -> tuple[float, float, float]:
    q = max(1, len(samples) // 4)
    first, last = statistics.median(samples[:q]), statistics.median(samples[-q:])
    return first, last, last / first


def worker(kind: str, steps: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(DRIFT_CFG)
    # distinct lengths: the allocator sees the shape churn of real numel batches
    batches = []
    for i in range(16):
        cfg = dict(DRIFT_CFG, seconds=DRIFT_CFG["seconds"] * (0.6 + 0.05 * i))
        batches += make_batches(model, cfg, 1, seed=i)
    samples: list[float] = []
    if kind == "bare":
        loop = BareLoop(model, batches)
        for _ in range(steps):
            samples.append(common.rss_mb())
            loop()
    else:
        from espnet2.train.options import TrainerOptions
        from espnet2.train.trainer import Trainer

        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        epochs = 2
        train = SamplingLoader(batches, steps // epochs, samples)
        valid = SamplingLoader(batches[:4], 4, None)
        with tempfile.TemporaryDirectory() as tmp:
            opts = TrainerOptions(output_dir=Path(tmp), max_epoch=epochs, use_matplotlib=False,
                                  keep_nbest_models=[1])
            Trainer(model, optimizer, None, train, valid, opts).run()
    first, last, ratio = drift(samples)
    common.worker_result(first_mb=first, last_mb=last, drift=ratio, n=len(samples),
                         max_mb=max(samples))


def run_inprocess(kind: str, steps: int) -> dict:
    import contextlib
    import io
    import time

    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        worker(kind, steps)
    line = buf.getvalue().strip().splitlines()[-1]
    return {**json.loads(line[len(common.RESULT_PREFIX):]), "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--smoke", action="store_true", help="40 steps (tests)")
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        worker(spec["kind"], spec["steps"])
        return
    steps = 40 if args.smoke else args.steps
    out = [common.machine_line(), f"[drift] {steps} steps, width-32 tiny HuBERT, batch 4, "
           "1 thread; RSS sampled every step; drift = median(last quarter) / median(first)"]
    print("\n".join(out), flush=True)
    results = {}
    for kind in ("bare", "trainer"):
        spec = json.dumps({"kind": kind, "steps": steps})
        if args.smoke:  # in this process (tests): same code path, no interpreter start-up
            r = run_inprocess(kind, steps)
        else:
            r = common.run_worker(common.python_cmd(HERE, "--worker", spec), timeout=1800)
        results[kind] = r
        if "error" in r:
            line = f"  {kind}: failed: {r['error']}"
        else:
            line = (f"  {kind}: first quarter {r['first_mb']:.1f} MiB, last quarter "
                    f"{r['last_mb']:.1f} MiB, max {r['max_mb']:.1f} MiB, {r['wall_s']:.0f} s wall")
        print(line, flush=True)
        out.append(line)
    for kind, r in results.items():
        if "error" not in r:
            out.append(f"ratio rss_drift {kind} last/first quarter: x{r['drift']:.4f} "
                       f"({r['last_mb'] - r['first_mb']:+.1f} MiB)")
    if all("error" not in r for r in results.values()):
        rel = results["trainer"]["drift"] / results["bare"]["drift"]
        out.append(f"ratio rss_drift trainer/bare: x{rel:.4f}")
    print("\n".join(line for line in out if line.startswith("ratio")), flush=True)
    if args.output:
        cmd = "tools/venv/bin/python bench/bench_rss_drift.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "RSS drift benchmark (bench/bench_rss_drift.py)",
                             cmd.strip(), out)


if __name__ == "__main__":
    main()
