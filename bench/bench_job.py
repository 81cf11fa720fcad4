"""Benchmark: a whole 3-epoch tiny HuBERT job through ``python -m espnet2.bin.ssl_train``.

Synthetic 16 kHz data: 240 training utterances of 1.2 s (numel batches of exactly 8: 30 steps
per epoch, the ESPnet measurement's shape) and 32 validation utterances; the tiny HuBERT of
bench/models.py written as a YAML config. The job's stderr is read line by line and each log
line is time-stamped on arrival, which gives:

* start-up: launch to the first step (``--log_interval 1``: the first ``1epoch:1/n`` line
  minus one step at the epoch's steady step time), target < 3 s;
* per-epoch wall (training + validation + checkpoints), total wall, peak RSS of the job;
* ``import espnet2.tasks.ssl`` time and RSS in a fresh interpreter.

ESPnet 202611 numbers from the issue "Speed and memory" are quoted as RECORDED constants
(another run, another time), not same-run measurements; ratios against them are labelled so.

    tools/venv/bin/python bench/bench_job.py [--smoke] [--output bench/results/job.md]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common  # noqa: E402
from bench.models import FS, cnn_shapes, config  # noqa: E402

# Recorded in the issue "Speed and memory" (ESPnet 202611, same tiny HuBERT, 1 thread).
ESPNET_RECORDED = {"startup_s": (10.0, 14.0), "epoch_s": 44.0, "job_s": 147.0,
                   "peak_rss_gb": 2.9, "import_s": 10.0, "import_mb": 450.0, "step_s": 1.10}
LINE = re.compile(r"(\d+)epoch:(\d+)/(\d+) ")
END = re.compile(r"(\d+)epoch valid:")
END_TRAIN = re.compile(r"(\d+)epoch train:")


def yaml_config(cfg: dict, batch_bins: int, epochs: int, workers: int) -> str:
    shapes = [list(s) for s in cnn_shapes(cfg["channels"], cfg["layers"])]
    return f"""\
frontend: wav2vec_cnn
frontend_conf: {{shapes: {shapes}, norm_mode: group_norm, bias: false, fs: 16k}}
normalize: null
specaug: null
preencoder: linear
preencoder_conf: {{output_size: {cfg['dim']}}}
encoder: transformer
encoder_conf: {{output_size: {cfg['dim']}, attention_heads: {cfg['heads']},
               linear_units: {cfg['ffn']}, num_blocks: {cfg['blocks']}, dropout_rate: 0.1,
               attention_dropout_rate: 0.1, input_layer: wav2vec, normalize_before: false,
               pos_enc_layer_type: conv}}
loss: [{{name: hubert, conf: {{num_classes: {cfg['classes']}, final_dim: {cfg['final_dim']}}}}}]
util: [{{name: mask, conf: {{mask_length: {cfg['mask_length']}}}}}]
optim: adam
optim_conf: {{lr: 0.0005}}
batch_type: numel
batch_bins: {batch_bins}
max_epoch: {epochs}
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_workers: {workers}
"""


def write_data(root: Path, cfg: dict, n_train: int, n_valid: int) -> None:
    import soundfile as sf

    from espnet2.data.frames import compose

    geometry = compose([(k, s) for _, k, s in cnn_shapes(cfg["channels"], cfg["layers"])])
    rng = np.random.default_rng(0)
    n = int(cfg["seconds"] * FS)
    for phase, count in (("train", n_train), ("valid", n_valid)):
        d = root / "data" / phase
        d.mkdir(parents=True)
        with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t:
            for i in range(count):
                utt = f"{phase}_{i:04d}"
                sf.write(d / f"{utt}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32),
                         FS, subtype="PCM_16")
                w.write(f"{utt} {d / utt}.wav\n")
                labels = rng.integers(0, cfg["classes"], geometry.num_frames(n))
                t.write(utt + " " + " ".join(map(str, labels)) + "\n")
    (root / "tokens.txt").write_text("".join(f"{i}\n" for i in range(cfg["classes"])))


def data_opts(root: Path) -> list[str]:
    opts = ["--config", str(root / "conf.yaml"), "--token_list", str(root / "tokens.txt")]
    for phase in ("train", "valid"):
        d = root / "data" / phase
        opts += [f"--{phase}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{phase}_data_path_and_name_and_type", f"{d}/text,text,text"]
    return opts


def run_stamped(cmd: list[str], timeout: float) -> tuple[int, list[tuple[float, str]], float, str]:
    """Run ``cmd``; return (rc, [(seconds since launch, stderr line)], wall, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(common.REPO), bufsize=1)
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    for line in proc.stderr:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    rc = proc.wait()
    timer.cancel()
    reader.join()
    return rc, lines, time.perf_counter() - t0, "".join(out)


def parse_timeline(lines: list[tuple[float, str]]) -> dict:
    """Start-up, steady step time of epoch 1 and per-epoch walls from stamped log lines."""
    progress = [(t, int(m[1]), int(m[2])) for t, s in lines if (m := LINE.search(s))]
    ends: dict[int, float] = {}
    for t, s in lines:
        m = END.search(s) or END_TRAIN.search(s)
        if m:
            ends[int(m[1])] = t  # the last summary line of the epoch wins
    first = [(t, b) for t, e, b in progress if e == 1]
    if len(first) < 2:
        return {"error": "fewer than two progress lines in epoch 1; cannot time steps"}
    (t1, b1), (tl, bl) = first[0], first[-1]
    step = (tl - t1) / (bl - b1)
    startup = t1 - b1 * step
    walls, prev = {}, startup
    for e in sorted(ends):
        walls[e] = ends[e] - prev
        prev = ends[e]
    return {"startup_s": startup, "step_s": step, "epoch_s": walls,
            "first_line_s": t1, "first_line_batch": b1}


def import_probe() -> dict:
    code = ("import time; t = time.perf_counter(); import espnet2.tasks.ssl; "
            "import sys; sys.path.insert(0, 'bench'); import common; "
            "common.worker_result(import_s=time.perf_counter() - t)")
    return common.run_worker([sys.executable, "-c", code], timeout=300)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny dims, 1 epoch (tests)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num_workers", type=int, default=1, help="the task default is 1")
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    args = p.parse_args(argv)
    cfg = config(args.smoke)
    epochs = 1 if args.smoke else args.epochs
    n_train, n_valid = (8, 4) if args.smoke else (240, 32)
    out = [common.machine_line()]
    print(out[0], flush=True)
    imp = {"error": "skipped in --smoke"} if args.smoke else import_probe()
    if "error" in imp:
        out.append(f"[import] failed: {imp['error']}")
    else:
        out.append(f"[import] `import espnet2.tasks.ssl`: {imp['import_s']:.2f} s, process peak "
                   f"RSS {imp['peak_rss_mb']:.0f} MiB")
        out.append(f"ratio import_time ours/espnet_recorded: "
                   f"x{imp['import_s'] / ESPNET_RECORDED['import_s']:.3f} (RECORDED, not same-run)")
        out.append(f"ratio import_rss ours/espnet_recorded: "
                   f"x{imp['peak_rss_mb'] / ESPNET_RECORDED['import_mb']:.3f} (RECORDED)")
    print("\n".join(out[1:]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root, cfg, n_train, n_valid)
        bins = cfg["batch"] * int(cfg["seconds"] * FS)
        (root / "conf.yaml").write_text(yaml_config(cfg, bins, epochs, args.num_workers))
        # shape files written directly (what --collect_stats true would write): the stats
        # stage is not part of the job's wall time in the ESPnet measurement either
        stats = root / "stats"
        for phase, count in (("train", n_train), ("valid", n_valid)):
            (stats / phase).mkdir(parents=True)
            (stats / phase / "speech_shape").write_text(
                "".join(f"{phase}_{i:04d} {int(cfg['seconds'] * FS)}\n" for i in range(count)))
        cmd = [sys.executable, "-m", "espnet2.bin.ssl_train", *data_opts(root),
               "--train_shape_file", str(stats / "train" / "speech_shape"),
               "--valid_shape_file", str(stats / "valid" / "speech_shape"),
               "--output_dir", str(root / "exp"), "--num_threads", "1", "--log_interval", "1"]
        lines = job_lines(run_job(cmd), epochs, n_train // cfg["batch"])
    print("\n".join(lines), flush=True)
    out += lines
    if args.output:
        command = "tools/venv/bin/python bench/bench_job.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "Whole-job benchmark (bench/bench_job.py)",
                             command.strip(), out)


def job_lines(job: dict, epochs: int, steps: int) -> list[str]:
    if "error" in job:
        return [f"[job] failed: {job['error']}"]
    if job.get("rc") != 0 or "timeline" not in job:
        return [f"[job] failed: rc {job.get('rc')}: {job.get('tail', '')}"]
    tl = job["timeline"]
    if "error" in tl:
        return [f"[job] {tl['error']}"]
    rec = ESPNET_RECORDED
    per_epoch = ", ".join(f"{e}: {w:.1f} s" for e, w in tl["epoch_s"].items())
    lines = [f"[job] {epochs} epoch(s) x {steps} steps (+ validation, checkpoints), 1 thread",
             f"  start-up to first step: {tl['startup_s']:.2f} s (target < 3 s); steady step "
             f"{tl['step_s']:.3f} s",
             f"  per epoch: {per_epoch}",
             f"  total wall: {job['job_wall_s']:.1f} s; job peak RSS "
             f"{job['job_peak_rss_mb']:.0f} MiB",
             f"  ESPnet RECORDED (issue, not same-run): start-up {rec['startup_s'][0]:.0f}-"
             f"{rec['startup_s'][1]:.0f} s, {rec['epoch_s']:.0f} s/epoch, {rec['job_s']:.0f} s "
             f"job, {rec['peak_rss_gb']} GB peak, {rec['step_s']} s/step"]
    mid = sum(rec["startup_s"]) / 2
    epoch_walls = list(tl["epoch_s"].values())
    lines.append(f"ratio startup ours/espnet_recorded: x{tl['startup_s'] / mid:.3f} (RECORDED)")
    if epoch_walls:
        mean_epoch = sum(epoch_walls) / len(epoch_walls)
        lines.append(f"ratio epoch ours/espnet_recorded: x{mean_epoch / rec['epoch_s']:.3f} "
                     "(RECORDED)")
    lines.append(f"ratio job ours/espnet_recorded: x{job['job_wall_s'] / rec['job_s']:.3f} "
                 "(RECORDED; only meaningful for the full 3-epoch run)")
    lines.append(f"ratio peak_rss ours/espnet_recorded: "
                 f"x{job['job_peak_rss_mb'] / 1024 / rec['peak_rss_gb']:.3f} (RECORDED)")
    return lines


def run_job(cmd: list[str]) -> dict:
    """Run the training job; its peak RSS is this process's largest child's ``ru_maxrss``
    (the job is by far the largest child this script starts)."""
    import resource

    rc, lines, wall, _ = run_stamped(cmd, timeout=1700)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rc": rc, "job_wall_s": wall, "job_peak_rss_mb": peak,
            "timeline": parse_timeline(lines), "tail": " | ".join(s for _, s in lines[-4:])}


if __name__ == "__main__":
    main()
