"""Benchmark: one training step of the tiny HuBERT (see bench/models.py), as ratios.

Sections (each prints ``ratio A/B: xR`` lines against a baseline run in the same invocation):

1. speed: our modules with a bare loop at 1 thread (baseline) vs torch's default threads vs the
   "naive" ESPnet-style modules (explicit-softmax attention, GroupNorm over padding) at default
   threads (out of the box) and at 1 thread; all interleaved round-robin in one process.
2. trainer: ``espnet2.train.trainer.Trainer`` step vs the bare loop (A B A B, same model).
3. frontend: CNN frontend forward+backward options (tanh GELU, channels-last (NWC) layout,
   bf16 autocast).
4. optimizer: Adam ``foreach=False`` (plain) vs ``foreach=True`` vs ``fused=True``.
5. memory: peak RSS per batch size with/without activation checkpointing, one subprocess
   per variant (``ru_maxrss`` of that process).
6. espnet (if ``--espnet_python`` exists): ESPnet's own modules in its venv, in a subprocess
   sandwiched between two runs of ours in the same worker protocol.
7. compile (``--compile``): torch.compile of frontend + encoder vs eager, in a subprocess.

    tools/venv/bin/python bench/bench_step.py [--smoke] [--compile] [--output bench/results/step.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()  # before anything changes it: "out of the box"

from bench import common  # noqa: E402
from bench.models import BareLoop, build_model, config, make_batches  # noqa: E402
from espnet2.utils.cpu_malloc import tune_cpu_malloc  # noqa: E402

HERE = Path(__file__).resolve()
ESPNET_PYTHON = "/tmp/espnet_venv/bin/python"


def with_threads(n: int, fn):
    def run():
        torch.set_num_threads(n)
        return fn()
    return run


def section_speed(cfg: dict, rounds: int, per_round: int, pad: bool) -> list[str]:
    torch.manual_seed(0)
    ours = build_model(cfg)
    naive = build_model(cfg, naive=True)
    naive.load_state_dict(ours.state_dict())
    batches = make_batches(ours, cfg, 4, pad=pad)
    ours_loop, naive_loop = BareLoop(ours, batches), BareLoop(naive, batches)
    ours_loop2 = BareLoop(ours, batches)  # same weights, its own optimizer state
    variants = {
        "ours_t1": with_threads(1, ours_loop),
        f"ours_tdefault{DEFAULT_THREADS}": with_threads(DEFAULT_THREADS, ours_loop2),
        f"naive_tdefault{DEFAULT_THREADS}": with_threads(DEFAULT_THREADS, naive_loop),
        "naive_t1": with_threads(1, naive_loop),
    }
    times = common.interleave(variants, rounds, per_round)
    torch.set_num_threads(1)
    med = {k: common.median(v) for k, v in times.items()}
    lines = [f"[speed] bare loop s/step, median of {rounds * per_round} interleaved steps "
             f"(torch default threads here: {DEFAULT_THREADS}; batch {cfg['batch']} x "
             f"{cfg['seconds']} s, {'padded' if pad else 'cropped, unpadded'})"]
    lines += [f"  {k}: {v:.4f} s/step" for k, v in med.items()]
    lines += common.ratio_lines(med, "ours_t1")
    return lines


def section_amp(cfg: dict, rounds: int) -> list[str]:
    """Whole bare step in fp32 vs bf16 autocast (the Trainer's ``--use_amp true``) on the CPU."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg)
    batches = make_batches(model, cfg, 4)
    fp32, bf16 = BareLoop(model, batches), BareLoop(model, batches)

    def autocast_step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return bf16()

    times = common.interleave({"fp32": fp32, "bf16_autocast": autocast_step}, rounds, 1)
    med = {k: common.median(v) for k, v in times.items()}
    lines = ["[amp] bare loop step, 1 thread, fp32 vs torch.autocast('cpu', bfloat16) "
             f"(CPU bf16 instructions: {cpu_flags('avx512_bf16', 'amx_bf16')})"]
    lines += [f"  {k}: {v:.4f} s/step" for k, v in med.items()]
    return lines + common.ratio_lines(med, "fp32")


def cpu_flags(*names: str) -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(n for n in names if n in flags) or "none"


class TimedLoader:
    """The trainer's loader protocol over fixed batches, recording when each batch is taken."""

    def __init__(self, batches: list[dict], n: int):
        self.batches, self.n, self.stamps = batches, n, []

    def num_batches(self, epoch: int) -> int:
        return self.n

    def iterate(self, epoch: int, start_batch: int = 0):
        for i in range(start_batch, self.n):
            self.stamps.append(time.perf_counter())
            yield dict(self.batches[i % len(self.batches)])


def section_trainer(cfg: dict, rounds: int, steps: int) -> list[str]:
    try:
        from espnet2.train.options import TrainerOptions
        from espnet2.train.trainer import Trainer
    except ImportError as e:
        return [f"[trainer] skipped: the trainer is not importable ({e})"]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg)
    batches = make_batches(model, cfg, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    bare = BareLoop(model, batches, optimizer)
    bare()  # warm-up
    bare_t, trainer_t = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            stamps = []
            for _ in range(steps):
                stamps.append(time.perf_counter())
                bare()
            stamps.append(time.perf_counter())
            bare_t += [b - a for a, b in zip(stamps, stamps[1:])]
            loader = TimedLoader(batches, steps + 1)
            opts = TrainerOptions(output_dir=Path(tmp) / f"r{r}", max_epoch=1,
                                  use_tensorboard=False, use_matplotlib=False,
                                  keep_nbest_models=[1],
                                  best_model_criterion=[("train", "loss", "min")])
            Trainer(model, optimizer, None, loader, None, opts).run()
            # n batches taken -> n - 1 complete steps between consecutive takes
            trainer_t += [b - a for a, b in zip(loader.stamps, loader.stamps[1:])]
    med = {"bare": common.median(bare_t), "trainer": common.median(trainer_t)}
    mean = {"bare": sum(bare_t) / len(bare_t), "trainer": sum(trainer_t) / len(trainer_t)}
    lines = [f"[trainer] 1 thread, {rounds} rounds of {steps} bare steps then a {steps}-step "
             "Trainer epoch (no validation; epoch-end checkpointing excluded)",
             f"  bare: median {med['bare']:.4f} s/step, mean {mean['bare']:.4f}",
             f"  trainer: median {med['trainer']:.4f} s/step, mean {mean['trainer']:.4f}"]
    lines += common.ratio_lines(med, "bare")
    lines.append(f"ratio trainer/bare (means): x{mean['trainer'] / mean['bare']:.3f}")
    return lines


def section_overhead(cfg: dict, smoke: bool) -> list[str]:
    """Trainer minus bare loop in ms/step on the smoke-size model (little compute, so the
    loop's own cost is not drowned in step-time noise), as a share of the tiny HuBERT step."""
    from bench.models import SMOKE

    lines = section_trainer(dict(SMOKE), 2 if smoke else 6, 5 if smoke else 50)
    vals = {}
    for line in lines:
        for key in ("bare", "trainer"):
            if line.startswith(f"  {key}: median "):
                vals[key] = float(line.split()[2])
    if len(vals) < 2:
        return lines
    over = vals["trainer"] - vals["bare"]
    lines = ["[overhead] " + line.strip() if not line.startswith("ratio") else
             line.replace("ratio trainer/bare", "ratio trainer/bare smoke_model") for line in lines]
    lines.append(f"  trainer overhead: {over * 1e3:+.2f} ms/step on the smoke-size model")
    return lines


def section_frontend(cfg: dict, rounds: int) -> list[str]:
    import torch.nn.functional as F

    from espnet2.asr.frontend import cnn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg)
    frontend = model.frontend.train()
    n = int(cfg["seconds"] * 16000)
    x = torch.randn(cfg["batch"], n)
    lengths = torch.full((cfg["batch"],), n)
    original = cnn.ConvBlock.forward

    def tanh_gelu(self, x, lengths):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, lengths)
        return F.gelu(x, approximate="tanh")

    def nwc(self, x, lengths):  # conv input in (B, T, C) memory layout ("channels last")
        return original(self, x.transpose(1, 2).contiguous().transpose(1, 2), lengths)

    def run(patch=None, autocast=False):
        def fn():
            cnn.ConvBlock.forward = patch or original
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    y, _ = frontend(x, lengths)
                y.float().square().mean().backward()
            finally:
                cnn.ConvBlock.forward = original
        return fn

    variants = {"default": run(), "tanh_gelu": run(tanh_gelu), "nwc_layout": run(nwc),
                "bf16_autocast": run(autocast=True)}
    times = common.interleave(variants, rounds, 1)
    med = {k: common.median(v) for k, v in times.items()}
    lines = [f"[frontend] CNN forward+backward alone, 1 thread, (B, N) = ({cfg['batch']}, {n})"]
    lines += [f"  {k}: {v:.4f} s" for k, v in med.items()]
    return lines + common.ratio_lines(med, "default", unit="s")


def section_optimizer(cfg: dict, rounds: int) -> list[str]:
    torch.set_num_threads(1)
    model = build_model(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {"plain": torch.optim.Adam(params, lr=1e-5, foreach=False),
            "foreach": torch.optim.Adam(params, lr=1e-5, foreach=True)}
    try:
        opts["fused"] = torch.optim.Adam(params, lr=1e-5, fused=True)
    except (RuntimeError, TypeError) as e:
        print(f"fused Adam unavailable on CPU: {e}")
    times = common.interleave({k: o.step for k, o in opts.items()}, rounds, 5)
    med = {k: common.median(v) for k, v in times.items()}
    numel = sum(p.numel() for p in params)
    lines = [f"[optimizer] Adam.step alone, 1 thread, {len(params)} tensors, {numel:,} params"]
    lines += [f"  {k}: {v * 1e3:.2f} ms" for k, v in med.items()]
    return lines + common.ratio_lines(med, "plain", unit="s")


def worker_args(spec: dict) -> list[str]:
    return common.python_cmd(HERE, "--worker", json.dumps(spec))


def section_memory(cfg: dict, smoke: bool, steps: int) -> list[str]:
    sizes = [cfg["batch"]] if smoke else [4, 8, 16]
    modes = {"none": (0, False), "cnn1": (1, False), "cnn1+enc": (1, True),
             "cnn_all+enc": (cfg["layers"], True)}
    if smoke:
        modes = {"none": (0, False), "cnn1+enc": (1, True)}
    lines = [f"[memory] peak RSS (MiB) of one process running {steps} steps, 1 thread; "
             "'act' = peak - RSS after building the model and batches"]
    header = "  batch | " + " | ".join(f"{m:>22}" for m in modes)
    lines.append(header)
    peaks: dict = {}
    for bs in sizes:
        cells = []
        for name, (k, enc) in modes.items():
            spec = {"kind": "mem", "smoke": smoke, "batch": bs, "ckpt_cnn": k, "ckpt_enc": enc,
                    "steps": steps, "threads": 1}
            r = common.run_worker(worker_args(spec), timeout=600)
            if "error" in r:
                cells.append(f"{'error':>22}")
                lines.append(f"  ! {name} bs={bs}: {r['error']}")
                continue
            peaks[(bs, name)] = r
            cells.append(f"{r['peak_rss_mb']:7.0f} act {r['peak_rss_mb'] - r['setup_rss_mb']:6.0f}"
                         f" {r['s_per_step']:5.2f}s")
        lines.append(f"  {bs:5d} | " + " | ".join(cells))
    lines.append("  (cell: peak RSS, activation part, s/step)")
    for bs in sizes:
        base = peaks.get((bs, "none"))
        for name in modes:
            r = peaks.get((bs, name))
            if name == "none" or base is None or r is None:
                continue
            act0 = base["peak_rss_mb"] - base["setup_rss_mb"]
            act = r["peak_rss_mb"] - r["setup_rss_mb"]
            rel = r["peak_rss_mb"] / base["peak_rss_mb"]
            lines.append(f"ratio peak_rss {name}/none bs={bs}: x{rel:.3f}"
                         f" (activations x{act / max(act0, 1e-9):.3f}, time "
                         f"x{r['s_per_step'] / base['s_per_step']:.3f})")
    if not smoke:
        spec = {"kind": "mem", "smoke": False, "batch": cfg["batch"], "ckpt_cnn": 0,
                "ckpt_enc": False, "steps": steps, "threads": 0, "naive": True}
        r = common.run_worker(worker_args(spec), timeout=600)
        base = peaks.get((cfg["batch"], "none"))
        if "error" not in r and base:
            lines.append(f"  naive, default threads, bs={cfg['batch']}: peak {r['peak_rss_mb']:.0f}"
                         f" MiB, {r['s_per_step']:.2f} s/step")
            lines.append(f"ratio peak_rss naive_tdefault/ours_t1 bs={cfg['batch']}: "
                         f"x{r['peak_rss_mb'] / base['peak_rss_mb']:.3f}")
    return lines


def section_espnet_interleaved(cfg: dict, python: str, steps: int) -> list[str]:
    """Ours and ESPnet's tiny HuBERT, each warm in its own process (own venv), plus ours on
    the ESPnet venv's torch, stepped round-robin so all see the same load; peak RSS each."""
    if not os.path.exists(python):
        return [f"[espnet_interleaved] skipped: no ESPnet venv at {python}"]
    spec = {"kind": "serve", "smoke": False, "batch": cfg["batch"], "steps": 0, "threads": 1}
    servers = {"ours": common.StepServer(worker_args(spec)),
               # the same without the trainer's glibc malloc tuning (espnet2/utils/cpu_malloc.py)
               "ours_default_malloc": common.StepServer(worker_args({**spec, "malloc": False})),
               "espnet": common.StepServer([python, str(HERE.parent / "espnet_worker.py"),
                                            "--serve", "--threads", "1"]),
               # our modules on the ESPnet venv's torch build (this repo first on sys.path):
               # separates the torch build from the modules
               "ours_on_espnet_torch": common.StepServer([python, *worker_args(spec)[1:]])}
    times: dict[str, list[float]] = {k: [] for k in servers}
    for i in range(steps):
        n = len(servers)
        order = list(servers)[i % n:] + list(servers)[: i % n]  # rotate who goes first
        for k in order:
            times[k].append(servers[k].step())
    final = {k: s.close() for k, s in servers.items()}
    med = {k: common.median(v) for k, v in times.items()}
    lines = [f"[espnet_interleaved] 1 thread, {steps} steps each, round-robin over three warm "
             "processes (ours: tools/venv; ESPnet 202511 and ours: the ESPnet venv's torch)"]
    for k in servers:
        lines.append(f"  {k}: median {med[k]:.4f} s/step (min {min(times[k]):.4f}), peak RSS "
                     f"{final[k]['peak_rss_mb']:.0f} MiB, {final[k]['params'] / 1e6:.2f}M params "
                     f"{final[k].get('note', '')}")
    lines.append(f"ratio espnet/ours step (interleaved): x{med['espnet'] / med['ours']:.3f}")
    lines.append(f"ratio espnet/ours_on_espnet_torch step (same torch build): "
                 f"x{med['espnet'] / med['ours_on_espnet_torch']:.3f}")
    lines.append(f"ratio ours_on_espnet_torch/ours step (torch build only): "
                 f"x{med['ours_on_espnet_torch'] / med['ours']:.3f}")
    lines.append(f"ratio ours/ours_default_malloc step (malloc tuning): "
                 f"x{med['ours'] / med['ours_default_malloc']:.3f}")
    lines.append(f"ratio espnet/ours step min: x{min(times['espnet']) / min(times['ours']):.3f}")
    lines.append(f"ratio espnet/ours peak_rss: "
                 f"x{final['espnet']['peak_rss_mb'] / final['ours']['peak_rss_mb']:.3f}")
    return lines


def section_espnet(cfg: dict, python: str, steps: int) -> list[str]:
    if not os.path.exists(python):
        return [f"[espnet] skipped: no ESPnet venv at {python}"]
    script = HERE.parent / "espnet_worker.py"
    ours_spec = {"kind": "mem", "smoke": False, "batch": cfg["batch"], "ckpt_cnn": 0,
                 "ckpt_enc": False, "steps": steps, "threads": 1}
    runs = {"ours_before": common.run_worker(worker_args(ours_spec), timeout=600),
            "espnet": common.run_worker([python, str(script), "--steps", str(steps),
                                         "--threads", "1"], timeout=600),
            "ours_after": common.run_worker(worker_args(ours_spec), timeout=600)}
    lines = ["[espnet] separate processes, 1 thread, bare loop; ESPnet sandwiched by ours"]
    for k, r in runs.items():
        if "error" in r:
            lines.append(f"  {k}: {r['error']}")
        else:
            lines.append(f"  {k}: {r['s_per_step']:.4f} s/step, peak RSS {r['peak_rss_mb']:.0f} "
                         f"MiB, {r.get('params', 0) / 1e6:.2f}M params"
                         + (f", imports {r['import_s']:.1f} s" if "import_s" in r else "")
                         + f" {r.get('note', '')}")
    if all("error" not in r for r in runs.values()):
        ours = (runs["ours_before"]["s_per_step"] + runs["ours_after"]["s_per_step"]) / 2
        rss = (runs["ours_before"]["peak_rss_mb"] + runs["ours_after"]["peak_rss_mb"]) / 2
        e = runs["espnet"]
        lines.append(f"ratio espnet/ours step: x{e['s_per_step'] / ours:.3f}")
        lines.append(f"ratio espnet/ours peak_rss: x{e['peak_rss_mb'] / rss:.3f}")
    return lines


IMPORT_PROBE = ("import time, sys; t = time.perf_counter(); import espnet2.tasks.ssl; "
                "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0]; "
                "print('BENCH_RESULT {\"import_s\": %f, \"peak_rss_mb\": %f}' "
                "% (time.perf_counter() - t, int(hwm.split()[1]) / 1024))")


def section_imports(python: str, repeats: int = 2) -> list[str]:
    """``import espnet2.tasks.ssl`` (torch included) in fresh interpreters, alternating ours
    (cwd = this repo) and ESPnet's (its venv, cwd = a temp dir so this repo is not found)."""
    if not os.path.exists(python):
        return [f"[imports] skipped: no ESPnet venv at {python}"]
    res: dict[str, list[dict]] = {"ours": [], "espnet": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            res["ours"].append(common.run_worker([sys.executable, "-c", IMPORT_PROBE],
                                                 timeout=600))
            res["espnet"].append(common.run_worker([python, "-c", IMPORT_PROBE], timeout=600,
                                                   cwd=tmp))
    lines = ["[imports] `import espnet2.tasks.ssl` (includes `import torch`), fresh processes, "
             f"alternating, {repeats} each"]
    med = {}
    for k, rs in res.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            lines.append(f"  {k}: failed: {rs[0].get('error')}")
            continue
        med[k] = (common.median([r["import_s"] for r in ok]),
                  common.median([r["peak_rss_mb"] for r in ok]))
        lines.append(f"  {k}: {med[k][0]:.2f} s, peak RSS {med[k][1]:.0f} MiB")
    if len(med) == 2:
        lines.append(f"ratio import_time espnet/ours: x{med['espnet'][0] / med['ours'][0]:.3f}")
        lines.append(f"ratio import_rss espnet/ours: x{med['espnet'][1] / med['ours'][1]:.3f}")
    return lines


def section_compile(cfg: dict, steps: int) -> list[str]:
    spec = {"kind": "compile", "smoke": False, "batch": cfg["batch"], "steps": steps}
    r = common.run_worker(worker_args(spec), timeout=600)
    if "error" in r:
        return [f"[compile] failed: {r['error']}"]
    return ["[compile] torch.compile(frontend), torch.compile(encoder), 1 thread, interleaved",
            f"  compile + first step: {r['compile_s']:.1f} s",
            f"  eager {r['eager']:.4f} s/step, compiled {r['compiled']:.4f} s/step",
            f"ratio compiled/eager: x{r['compiled'] / r['eager']:.3f}"]


def worker(spec: dict) -> None:
    t0 = time.perf_counter()
    threads = spec.get("threads", 1) or DEFAULT_THREADS
    torch.set_num_threads(threads)
    if spec.get("malloc", True):  # what ssl_train does at start-up
        tune_cpu_malloc()
    cfg = config(spec["smoke"])
    torch.manual_seed(0)
    model = build_model(cfg, checkpoint_layers=spec.get("ckpt_cnn", 0),
                        encoder_checkpointing=spec.get("ckpt_enc", False),
                        naive=spec.get("naive", False))
    batches = make_batches(model, cfg, 2, batch_size=spec["batch"])
    loop = BareLoop(model, batches)
    setup = common.rss_mb()
    if spec["kind"] == "compile":
        eager = BareLoop(model, batches)
        model.frontend = torch.compile(model.frontend)
        model.encoder = torch.compile(model.encoder)
        tc = time.perf_counter()
        loop()
        compile_s = time.perf_counter() - tc
        model.frontend, model.encoder = model.frontend._orig_mod, model.encoder._orig_mod
        compiled_front, compiled_enc = torch.compile(model.frontend), torch.compile(model.encoder)

        def swap(compiled):
            def fn():
                model.frontend = compiled_front if compiled else compiled_front._orig_mod
                model.encoder = compiled_enc if compiled else compiled_enc._orig_mod
                return (loop if compiled else eager)()
            return fn
        times = common.interleave({"eager": swap(False), "compiled": swap(True)}, spec["steps"], 1)
        common.worker_result(compile_s=compile_s, eager=common.median(times["eager"]),
                             compiled=common.median(times["compiled"]), setup_rss_mb=setup)
        return
    if spec["kind"] == "serve":
        common.serve_steps(loop, setup_rss_mb=setup, threads=threads,
                           params=sum(p.numel() for p in model.parameters()))
        return
    loop()  # first step (allocator warm-up) is in the peak but not in the timing
    times = [common.timed(loop) for _ in range(spec["steps"])]
    common.worker_result(s_per_step=common.median(times), setup_rss_mb=setup,
                         threads=threads, total_s=time.perf_counter() - t0,
                         params=sum(p.numel() for p in model.parameters()))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny dims, few steps (tests)")
    p.add_argument("--pad", action="store_true", help="padded batches in the speed section")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    p.add_argument("--espnet_python", default=ESPNET_PYTHON)
    p.add_argument("--sections",
                   default="speed,trainer,overhead,amp,frontend,optimizer,memory,espnet,"
                           "espnet_interleaved,imports")
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    cfg = config(args.smoke)
    sections = args.sections.split(",")
    r = 1 if args.smoke else 6
    out = [common.machine_line()]
    print(out[0], flush=True)
    jobs = {
        "speed": lambda: section_speed(cfg, r, 1 if args.smoke else 2, args.pad),
        "trainer": lambda: section_trainer(cfg, 2 if args.smoke else 4, 3 if args.smoke else 10),
        "overhead": lambda: section_overhead(cfg, args.smoke),
        "amp": lambda: section_amp(cfg, 2 if args.smoke else 8),
        "frontend": lambda: section_frontend(cfg, 2 if args.smoke else 10),
        "optimizer": lambda: section_optimizer(cfg, 2 if args.smoke else 10),
        "memory": lambda: section_memory(cfg, args.smoke, 1 if args.smoke else 3),
        "espnet": lambda: ([] if args.smoke else section_espnet(cfg, args.espnet_python, 5)),
        "espnet_interleaved": lambda: ([] if args.smoke else
                                       section_espnet_interleaved(cfg, args.espnet_python, 16)),
        "imports": lambda: ([] if args.smoke else section_imports(args.espnet_python)),
    }
    if args.compile and not args.smoke:
        jobs["compile"] = lambda: section_compile(cfg, 8)
        if "compile" not in sections:
            sections.append("compile")
    for name in sections:
        lines = jobs[name]()
        print("\n".join(lines), flush=True)
        out += lines
    if args.output:
        cmd = "tools/venv/bin/python bench/bench_step.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "Training step benchmark (bench/bench_step.py)",
                             cmd.strip(), out)


if __name__ == "__main__":
    main()
