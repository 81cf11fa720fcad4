"""Benchmark: a whole tiny HuBERT job, ours against ESPnet's own job in the same run.

Synthetic 16 kHz data: 240 training utterances of 1.2 s (numel batches of exactly 8: 30 steps
per epoch, the ESPnet measurement's shape) and 32 validation utterances; the tiny HuBERT of
bench/models.py written as a YAML config. Variants, one process each, one after the other:

* ``ours``: ``python -m espnet2.bin.ssl_train`` out of the box (no environment variables, no
  ``--num_threads``: it picks its thread count itself and logs it);
* ``espnet_t1``: ESPnet's own ``-m espnet2.bin.ssl_train`` (``--espnet_python``, default
  ``/tmp/espnet_venv/bin/python``) on the same files and config with
  ``OMP_NUM_THREADS=MKL_NUM_THREADS=1`` (the issue's "1 thread" measurement);
* ``espnet_ootb``: the same with no thread variables (torch's default thread count; ESPnet has
  no thread option), ``--ootb_epochs`` epochs (it is slow): compare it per step / per epoch.

Each job's stderr is read line by line and each line is time-stamped on arrival
(``--log_interval 1``), which gives start-up (launch to the first step: the first progress
line minus one step at epoch 1's steady step time; target < 3 s), the steady step, and the
epoch walls (epoch e runs from its first step's start to epoch e+1's; the last one to the
process's exit, so start-up plus epochs is the whole job: training, validation, checkpoints,
final averaging). Peak RSS: the job process's ``VmHWM`` polled every 0.1 s, and the
``ru_maxrss`` of its own process tree from ``wait4`` (never mixed with the other variants).
See bench/espnet_job.py for what ESPnet's job needs that ours does not.

ESPnet 202611 numbers quoted in the issue "Speed and memory" are printed too, labelled
RECORDED (another run, another time); without the ESPnet venv they are the only baseline.

    tools/venv/bin/python bench/bench_job.py [--smoke] [--variants ours,espnet_t1,espnet_ootb]
        [--espnet_python PATH] [--ootb_epochs 1] [--output bench/results/job.md]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common, espnet_job  # noqa: E402
from bench.models import FS, cnn_shapes, config  # noqa: E402

# Recorded in the issue "Speed and memory" (ESPnet 202611, same tiny HuBERT, 1 thread).
ESPNET_RECORDED = {"startup_s": (10.0, 14.0), "epoch_s": 44.0, "job_s": 147.0,
                   "peak_rss_gb": 2.9, "import_s": 10.0, "import_mb": 450.0, "step_s": 1.10}
# ``1epoch:5/30 step:5 ...`` (espnet2/train/reporter.py)
OURS_PROGRESS = re.compile(r"(?P<e>\d+)epoch:(?P<b>\d+)/\d+ ")
THREADS = re.compile(r"torch intra-op threads: .*")
VARIANTS = ("ours", "ours_bf16", "espnet_t1", "espnet_ootb")


def yaml_config(cfg: dict, batch_bins: int, epochs: int, workers: int,
                espnet: bool = False) -> str:
    """Our job's YAML; ``espnet``: ESPnet's variant (see bench/espnet_job.py)."""
    shapes = [list(s) for s in cnn_shapes(cfg["channels"], cfg["layers"])]
    conv_mode = ", conv_mode: standard" if espnet else ""
    return f"""\
frontend: wav2vec_cnn
frontend_conf: {{shapes: {shapes}, norm_mode: group_norm, bias: false, fs: 16k{conv_mode}}}
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
batch_bins: {batch_bins - 1 if espnet else batch_bins}
max_epoch: {epochs}
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_workers: {workers}
"""


def write_data(root: Path, cfg: dict, n_train: int, n_valid: int) -> None:
    """wav.scp + text (frame labels) per phase, tokens.txt, and the speech_shape files that
    ``--collect_stats true`` would write (the stats stage is not part of the job's wall)."""
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
        (root / "stats" / phase).mkdir(parents=True)
        (root / "stats" / phase / "speech_shape").write_text(
            "".join(f"{phase}_{i:04d} {n}\n" for i in range(count)))
    (root / "tokens.txt").write_text("".join(f"{i}\n" for i in range(cfg["classes"])))


def data_opts(root: Path) -> list[str]:
    opts = []
    for phase in ("train", "valid"):
        d = root / "data" / phase
        opts += [f"--{phase}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                 f"--{phase}_data_path_and_name_and_type", f"{d}/text,text,text"]
    return opts


def shape_opts(root: Path) -> list[str]:
    return [opt for phase in ("train", "valid")
            for opt in (f"--{phase}_shape_file", str(root / "stats" / phase / "speech_shape"))]


def vmhwm_mb(pid: int) -> float:
    """``VmHWM`` of process ``pid`` in MiB; 0 once it is gone (or a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_stamped(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> dict:
    """Run ``cmd``; return rc, ``lines`` [(seconds since launch, stderr line)], ``wall_s``,
    ``peak_rss_mb`` (polled VmHWM of the process) and ``tree_maxrss_mb`` (``wait4``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=str(cwd or common.REPO), env=env, bufsize=1)
    lines: list[tuple[float, str]] = []
    peak, done = [0.0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], vmhwm_mb(proc.pid))
            done.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    for line in proc.stderr:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    done.set()
    poller.join()
    peak[0] = max(peak[0], vmhwm_mb(proc.pid))
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own tree, not all children
    proc.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    return {"rc": proc.returncode, "lines": lines, "wall_s": time.perf_counter() - t0,
            "peak_rss_mb": peak[0], "tree_maxrss_mb": usage.ru_maxrss / 1024}


def parse_timeline(lines: list[tuple[float, str]], progress: re.Pattern, wall: float) -> dict:
    """Start-up, steady step of epoch 1, steps and wall per epoch from stamped progress lines
    (``progress`` has groups ``e``, epoch, and ``b``, batch within the epoch)."""
    by_epoch: dict[int, list[tuple[float, int]]] = {}
    for t, s in lines:
        if m := progress.search(s):
            by_epoch.setdefault(int(m["e"]), []).append((t, int(m["b"])))
    first = by_epoch.get(1, [])
    if len(first) < 2:
        return {"error": "fewer than two progress lines in epoch 1; cannot time steps"}
    (t1, b1), (tl, bl) = first[0], first[-1]
    step = (tl - t1) / (bl - b1)
    starts = {e: pts[0][0] - pts[0][1] * step for e, pts in sorted(by_epoch.items())}
    epochs = sorted(starts)
    walls = {e: (starts[epochs[i + 1]] if i + 1 < len(epochs) else wall) - starts[e]
             for i, e in enumerate(epochs)}
    return {"startup_s": starts[1], "step_s": step, "epoch_s": walls,
            "steps": {e: max(b for _, b in pts) for e, pts in by_epoch.items()}}


def import_probe() -> dict:
    code = ("import time; t = time.perf_counter(); import espnet2.tasks.ssl; "
            "import sys; sys.path.insert(0, 'bench'); import common; "
            "common.worker_result(import_s=time.perf_counter() - t)")
    return common.run_worker([sys.executable, "-c", code], timeout=300)


def pick_variants(args) -> tuple[list[str], str | None]:
    """(variants to run, why the ESPnet variants were dropped or None)."""
    if args.variants:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in names if v not in VARIANTS]
        if bad:
            raise SystemExit(f"--variants {args.variants}: unknown {bad}; choose from "
                             f"{', '.join(VARIANTS)}")
    else:
        names = ["ours"] if args.smoke else list(VARIANTS)
    wants_espnet = any(v.startswith("espnet") for v in names)
    why = None
    if wants_espnet and not args.espnet_python:
        why = (f"no ESPnet venv ({espnet_job.DEFAULT_PYTHON} absent and no --espnet_python); "
               "see bench/README.md to install one")
    elif wants_espnet and not Path(args.espnet_python).exists():
        why = f"--espnet_python {args.espnet_python}: no such file"
    elif wants_espnet and args.smoke:
        why = ("--smoke dims do not fit ESPnet's HuBERT collate (it assumes the 400/320-sample "
               "window of the 7-layer CNN); run without --smoke, e.g. --epochs 1 --n_train 24")
    if why:
        names = [v for v in names if not v.startswith("espnet")]
    elif not args.variants and args.smoke:
        why = "--smoke runs ours only"
    return names, why


def run_variant(name: str, root: Path, args, epochs: int, info: dict) -> dict:
    if name.startswith("ours"):
        cmd = [sys.executable, "-m", "espnet2.bin.ssl_train", "--config", str(root / "conf.yaml"),
               "--token_list", str(root / "tokens.txt"), *data_opts(root), *shape_opts(root),
               "--output_dir", str(root / f"exp_{name}"), "--log_interval", "1"]
        if name == "ours_bf16":
            cmd += ["--use_amp", "true"]  # bf16 autocast on CPU (not offered by ESPnet on CPU)
        # cwd is this repository (``-m`` imports its espnet2); no thread variables
        job = run_stamped(cmd, timeout=1700, env=espnet_job.clean_env(one_thread=False))
        progress = OURS_PROGRESS
    else:
        n = epochs if name == "espnet_t1" else args.ootb_epochs
        cmd = espnet_job.command(args.espnet_python, root, info, data_opts(root),
                                    shape_opts(root), root / f"exp_{name}", n)
        # cwd outside this repository and no PYTHONPATH: only ESPnet's espnet2 is importable
        job = run_stamped(cmd, timeout=3000, cwd=root,
                          env=espnet_job.clean_env(one_thread=name == "espnet_t1"))
        progress = espnet_job.PROGRESS
    job["timeline"] = parse_timeline(job["lines"], progress, job["wall_s"])
    return job


def variant_lines(name: str, job: dict, info: dict) -> list[str]:
    if job["rc"] != 0 or "error" in job["timeline"]:
        tail = " | ".join(s for _, s in job["lines"][-6:])
        why = job["timeline"].get("error", "")
        return [f"[{name}] failed: rc {job['rc']} {why}: {tail}"]
    tl = job["timeline"]
    if name.startswith("ours"):
        threads = next((m[0] for _, s in job["lines"] if (m := THREADS.search(s))),
                       "threads not logged")
        what = f"ours, no env vars; {threads}"
        if name == "ours_bf16":
            what += "; --use_amp true (bf16 autocast on CPU)"
    else:
        what = (f"ESPnet {info.get('espnet')} (its venv's torch {info.get('torch')}), "
                + ("OMP_NUM_THREADS=MKL_NUM_THREADS=1" if name == "espnet_t1"
                   else "out of the box: no thread variables"))
    steps = ", ".join(f"{e}: {n}" for e, n in tl["steps"].items())
    walls = ", ".join(f"{e}: {w:.1f} s" for e, w in tl["epoch_s"].items())
    return [f"[{name}] {what}",
            f"  steps per epoch: {steps} (+ validation, checkpoints)",
            f"  start-up to first step: {tl['startup_s']:.2f} s (target < 3 s); steady step "
            f"{tl['step_s']:.3f} s",
            f"  per epoch: {walls}",
            f"  total wall: {job['wall_s']:.1f} s; peak RSS {job['peak_rss_mb']:.0f} MiB (job "
            f"process VmHWM, polled; ru_maxrss of its process tree "
            f"{job['tree_maxrss_mb']:.0f} MiB)"]


def ok(job: dict | None) -> bool:
    return job is not None and job["rc"] == 0 and "error" not in job["timeline"]


def mean_epoch(job: dict) -> float:
    walls = list(job["timeline"]["epoch_s"].values())
    return sum(walls) / len(walls)


def same_run_ratios(jobs: dict[str, dict]) -> list[str]:
    ours, t1, ootb = jobs.get("ours"), jobs.get("espnet_t1"), jobs.get("espnet_ootb")
    if not ok(ours):
        return []
    lines = []
    o = ours["timeline"]
    if ok(t1):
        e = t1["timeline"]
        if e["steps"] != o["steps"]:
            lines.append(f"WARNING: steps per epoch differ: ours {o['steps']}, espnet_t1 "
                         f"{e['steps']}: not the same job")
        lines += [
            f"ratio job ours/espnet_t1: x{ours['wall_s'] / t1['wall_s']:.3f} "
            f"({ours['wall_s']:.1f} s vs {t1['wall_s']:.1f} s; target <= 0.6)",
            f"ratio startup ours/espnet_t1: x{o['startup_s'] / e['startup_s']:.3f} "
            f"({o['startup_s']:.2f} s vs {e['startup_s']:.2f} s)",
            f"ratio epoch ours/espnet_t1: x{mean_epoch(ours) / mean_epoch(t1):.3f} "
            f"({mean_epoch(ours):.1f} s vs {mean_epoch(t1):.1f} s, mean epoch wall)",
            f"ratio step ours/espnet_t1: x{o['step_s'] / e['step_s']:.3f} "
            f"({o['step_s']:.3f} s vs {e['step_s']:.3f} s)",
            f"ratio peak_rss ours/espnet_t1: x{ours['peak_rss_mb'] / t1['peak_rss_mb']:.3f} "
            f"({ours['peak_rss_mb']:.0f} MiB vs {t1['peak_rss_mb']:.0f} MiB; target <= 0.7)"]
    bf16 = jobs.get("ours_bf16")
    if ok(bf16) and ok(t1):
        b, e = bf16["timeline"], t1["timeline"]
        lines += [
            f"ratio job ours_bf16/espnet_t1: x{bf16['wall_s'] / t1['wall_s']:.3f} "
            f"({bf16['wall_s']:.1f} s vs {t1['wall_s']:.1f} s; our --use_amp true on CPU vs "
            "ESPnet fp32, which has no CPU autocast)",
            f"ratio step ours_bf16/ours: x{b['step_s'] / o['step_s']:.3f}"]
    if ok(ootb):
        e = ootb["timeline"]
        lines += [
            f"ratio step espnet_ootb/ours: x{e['step_s'] / o['step_s']:.3f} (out-of-the-box "
            f"throughput of ours over ESPnet's; {e['step_s']:.3f} s vs {o['step_s']:.3f} s per "
            "step; target >= 3)",
            f"ratio epoch1 espnet_ootb/ours: x{e['epoch_s'][1] / o['epoch_s'][1]:.3f} "
            f"({e['epoch_s'][1]:.1f} s vs {o['epoch_s'][1]:.1f} s, epoch 1 with validation "
            "and checkpoints)"]
    return lines


def recorded_lines(ours: dict | None) -> list[str]:
    """Ratios against the issue's RECORDED ESPnet numbers (not same-run)."""
    if not ok(ours):
        return []
    rec, tl = ESPNET_RECORDED, ours["timeline"]
    mid = sum(rec["startup_s"]) / 2
    return [
        f"ESPnet RECORDED in the issue (ESPnet 202611, another run, NOT same-run): start-up "
        f"{rec['startup_s'][0]:.0f}-{rec['startup_s'][1]:.0f} s, {rec['epoch_s']:.0f} s/epoch, "
        f"{rec['job_s']:.0f} s job, {rec['peak_rss_gb']} GB peak, {rec['step_s']} s/step",
        f"ratio startup ours/espnet_recorded: x{tl['startup_s'] / mid:.3f} (RECORDED)",
        f"ratio epoch ours/espnet_recorded: x{mean_epoch(ours) / rec['epoch_s']:.3f} "
        "(RECORDED)",
        f"ratio job ours/espnet_recorded: x{ours['wall_s'] / rec['job_s']:.3f} (RECORDED; "
        "only meaningful for the full 3-epoch run)",
        f"ratio peak_rss ours/espnet_recorded: "
        f"x{ours['peak_rss_mb'] / 1024 / rec['peak_rss_gb']:.3f} (RECORDED)"]


def emit(out: list[str], lines: list[str]) -> None:
    print("\n".join(lines), flush=True)
    out += lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny dims, 1 epoch, ours only (tests)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n_train", type=int, default=240, help="training utterances (8 a step)")
    p.add_argument("--n_valid", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=1, help="the task default is 1")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated subset of {','.join(VARIANTS)} (default: all; "
                        "ours only with --smoke)")
    p.add_argument("--espnet_python", default=espnet_job.default_python(),
                   help="Python of an ESPnet venv (default: "
                        f"{espnet_job.DEFAULT_PYTHON} if it exists)")
    p.add_argument("--ootb_epochs", type=int, default=1, help="epochs of espnet_ootb")
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    p.add_argument("--log_dir", default=None, help="keep each job's stamped stderr here "
                   "(<variant>.log) to check what ESPnet did")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = config(args.smoke)
    epochs = 1 if args.smoke else args.epochs
    n_train, n_valid = (8, 4) if args.smoke else (args.n_train, args.n_valid)
    variants, skipped = pick_variants(args)
    out: list[str] = []
    emit(out, [common.machine_line()])
    imp = {"error": "skipped in --smoke"} if args.smoke else import_probe()
    if "error" in imp:
        emit(out, [f"[import] failed: {imp['error']}"])
    else:
        emit(out, [f"[import] `import espnet2.tasks.ssl`: {imp['import_s']:.2f} s, process peak "
                   f"RSS {imp['peak_rss_mb']:.0f} MiB",
                   f"ratio import_time ours/espnet_recorded: "
                   f"x{imp['import_s'] / ESPNET_RECORDED['import_s']:.3f} (RECORDED)",
                   f"ratio import_rss ours/espnet_recorded: "
                   f"x{imp['peak_rss_mb'] / ESPNET_RECORDED['import_mb']:.3f} (RECORDED)"])
    if skipped:
        emit(out, [f"[espnet] same-run comparison skipped: {skipped}"])
    with tempfile.TemporaryDirectory(prefix="bench_job_") as tmp:
        root = Path(tmp)
        write_data(root, cfg, n_train, n_valid)
        bins = cfg["batch"] * int(cfg["seconds"] * FS)
        (root / "conf.yaml").write_text(yaml_config(cfg, bins, epochs, args.num_workers))
        info: dict = {}
        if any(v.startswith("espnet") for v in variants):
            info = espnet_job.probe(args.espnet_python, root)
            if "error" in info:
                emit(out, [f"[espnet] same-run comparison skipped: {info['error']}"])
                variants = [v for v in variants if not v.startswith("espnet")]
            else:
                (root / "conf_espnet.yaml").write_text(
                    yaml_config(cfg, bins, epochs, args.num_workers, espnet=True))
                espnet_job.write_token_list(root / "tokens.txt", root / "tokens_espnet.txt")
                emit(out, [f"[espnet] {n}" for n in espnet_job.deviations(info)])
        jobs = {}
        for name in variants:
            jobs[name] = run_variant(name, root, args, epochs, info)
            if args.log_dir:
                Path(args.log_dir).mkdir(parents=True, exist_ok=True)
                Path(args.log_dir, f"{name}.log").write_text(
                    "".join(f"{t:9.3f} {s}\n" for t, s in jobs[name]["lines"]))
            emit(out, variant_lines(name, jobs[name], info))
    emit(out, same_run_ratios(jobs) + recorded_lines(jobs.get("ours")))
    if args.output:
        command = "tools/venv/bin/python bench/bench_job.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "Whole-job benchmark (bench/bench_job.py)",
                             command.strip(), out)


if __name__ == "__main__":
    main()
