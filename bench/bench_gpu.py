"""Benchmark (GPU): HuBERT Base and DinoSR Base training steps in bf16, eager vs torch.compile.

For each model (HuBERT Base: 504-class masked prediction; DinoSR Base: 8 codebooks of 256
with an EMA teacher) and each per-GPU batch (1.4M samples = fairseq HuBERT Base
``max_tokens``; 3.8M = SpidR's DinoSR setting), measures in one process:

* step time (fused AdamW, bf16 autocast, ``torch.cuda.synchronize`` around each step),
* audio seconds per second (16 kHz), peak memory (``max_memory_allocated``),
* MFU: FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
  convolutions, attention; forward and backward) / step time / the GPU's dense bf16 peak.

Recorded reference (SpidR paper, NOT same-run): DinoSR Base 0.135 s/step at 3.8M samples per
GPU on an H100. Without CUDA it says so and exits 0; ``--smoke`` runs tiny dims on the CPU.

    python bench/bench_gpu.py [--compile both|eager|compiled] [--output bench/results/gpu.md]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench import common  # noqa: E402

FS = 16000
SPIDR_DINOSR_H100 = 0.135  # s/step, DinoSR Base, 3.8M samples/GPU (recorded, SpidR)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12}
BATCHES = (1_400_000, 3_800_000)
MAX_UTT = 250_000  # fairseq HuBERT max_sample_size


def build(kind: str, smoke: bool):
    """HuBERT Base / DinoSR Base (or tiny versions with ``smoke``)."""
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.frontend.cnn import CNNFrontend
    from espnet2.asr.preencoder.linear import LinearProjection
    from espnet2.ssl.espnet_model import ESPnetSSLModel
    from espnet2.ssl.loss.dinosr import DinoSRLoss
    from espnet2.ssl.loss.hubert import HuBERTLoss
    from espnet2.ssl.utils.ema import EMATeacher
    from espnet2.ssl.utils.mask import Masking

    if smoke:
        d, heads, ffn, blocks, ch = 16, 2, 32, 2, 16
        shapes = [(ch, 10, 5), (ch, 3, 2)]
    else:
        d, heads, ffn, blocks, ch = 768, 12, 3072, 12, 512
        shapes = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    encoder = TransformerEncoder(d, d, attention_heads=heads, linear_units=ffn,
                                 num_blocks=blocks, dropout_rate=0.1,
                                 attention_dropout_rate=0.1, input_layer="wav2vec",
                                 normalize_before=False, pos_enc_layer_type="conv",
                                 layer_drop_rate=0.05)
    if kind == "hubert":
        losses = [("hubert", HuBERTLoss(d, 8 if smoke else 504, final_dim=8 if smoke else 256),
                   1.0)]
        ema = None
    else:
        losses = [("dinosr", DinoSRLoss(d, num_codebooks=2 if smoke else 8,
                                        codebook_size=4 if smoke else 256), 1.0)]
        ema = EMATeacher(encoder)
    return ESPnetSSLModel(
        frontend=CNNFrontend(shapes=shapes, norm_mode="group_norm", bias=False),
        specaug=None, normalize=None, preencoder=LinearProjection(ch, d, layer_norm=True),
        encoder=encoder, losses=losses, masker=Masking(d, mask_length=2 if smoke else 10),
        ema=ema)


def make_batch(model, total: int, device, num_classes: int) -> dict:
    bsz = max(1, math.ceil(total / MAX_UTT))
    n = total // bsz
    frames = model.frontend.frame_geometry().num_frames(n)
    return {"speech": torch.randn(bsz, n, device=device),
            "speech_lengths": torch.full((bsz,), n, device=device),
            "text": torch.randint(0, num_classes, (bsz, frames), device=device),
            "text_lengths": torch.full((bsz,), frames, device=device)}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model, batch, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=torch.bfloat16):
        loss, _, _ = model(**batch)
    with counter:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(kind: str, total: int, compiled: bool, smoke: bool, device, steps: int) -> dict:
    torch.manual_seed(0)
    model = build(kind, smoke).to(device).train()
    num_classes = 8 if smoke else 504
    batch = make_batch(model, total, device, num_classes)
    flops = count_flops(model, batch, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            fused=device.type == "cuda")
    if compiled:  # in place (Module.compile): parameter names, EMA matching unchanged
        model.frontend.compile()
        model.encoder.compile()
        if model.ema is not None:
            model.ema.model.compile()

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss, _, _ = model(**batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.after_optimizer_step(i + 1)

    t0 = time.perf_counter()
    for i in range(3 if not smoke else 1):  # warm-up (and compilation)
        step(i)
    sync(device)
    warm = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps):
        sync(device)
        t = time.perf_counter()
        step(100 + i)
        sync(device)
        times.append(time.perf_counter() - t)
    s = common.median(times)
    peak = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
            else common.peak_rss_mb() / 1024)
    return {"s_per_step": s, "audio_s_per_s": total / FS / s, "flops": flops,
            "peak_gb": peak, "warmup_s": warm, "params": sum(p.numel() for p in model.parameters())}


def peak_flops(device, override: float | None) -> tuple[float, str]:
    if override:
        return override * 1e12, f"--peak_tflops {override}"
    if device.type != "cuda":
        return float("nan"), "CPU (no peak defined)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, f"{name}: dense bf16 {value / 1e12:.0f} TFLOP/s"
    return float("nan"), f"{name}: unknown peak (pass --peak_tflops)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny dims on the CPU (tests)")
    p.add_argument("--compile", choices=("both", "eager", "compiled"), default="both")
    p.add_argument("--models", default="hubert,dinosr")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--peak_tflops", type=float, default=None)
    p.add_argument("--output", default=None, help="write bench/results/<name>.md")
    args = p.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device available; nothing measured (use --smoke for a tiny "
              "CPU dry run).")
        return
    device = torch.device("cuda" if not args.smoke else "cpu")
    if args.smoke:
        torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, peak_desc = peak_flops(device, args.peak_tflops)
    totals = (4000, 8000) if args.smoke else BATCHES
    modes = {"both": (False, True), "eager": (False,), "compiled": (True,)}[args.compile]
    if args.smoke:
        modes = (False,)
    steps = 2 if args.smoke else args.steps
    out = [common.machine_line(), f"device: {device} ({peak_desc})"]
    print("\n".join(out), flush=True)
    results = {}
    for kind in args.models.split(","):
        for total in totals:
            for compiled in modes:
                key = f"{kind}_{total / 1e6:g}M_{'compiled' if compiled else 'eager'}"
                try:
                    r = measure(kind, total, compiled, args.smoke, device, steps)
                except torch.OutOfMemoryError as e:
                    line = f"  {key}: out of memory ({str(e).splitlines()[0]})"
                    print(line, flush=True)
                    out.append(line)
                    torch.cuda.empty_cache()
                    continue
                results[key] = r
                mfu = r["flops"] / r["s_per_step"] / peak
                line = (f"  {key}: {r['s_per_step']:.4f} s/step, {r['audio_s_per_s']:.0f} audio "
                        f"s/s, {r['flops'] / 1e12:.2f} TFLOP/step, MFU {mfu:.3f}, peak "
                        f"{r['peak_gb']:.2f} GB, warm-up {r['warmup_s']:.1f} s, "
                        f"{r['params'] / 1e6:.1f}M params")
                print(line, flush=True)
                out.append(line)
                if device.type == "cuda" and torch.cuda.is_available():
                    torch.cuda.empty_cache()
    ratios = []
    for key, r in results.items():
        if key.endswith("_compiled"):
            eager = results.get(key.replace("_compiled", "_eager"))
            if eager:
                ratios.append(f"ratio {key}/eager: x{r['s_per_step'] / eager['s_per_step']:.3f}")
        if key.startswith("dinosr_3.8M") or (args.smoke and key.startswith("dinosr")):
            ratios.append(f"ratio {key}/spidr_recorded_h100: "
                          f"x{r['s_per_step'] / SPIDR_DINOSR_H100:.3f} (RECORDED reference, "
                          f"{'CPU smoke: meaningless' if args.smoke else 'not same-run'})")
    print("\n".join(ratios), flush=True)
    out += ratios
    if args.output:
        cmd = "python bench/bench_gpu.py " + " ".join(argv or sys.argv[1:])
        common.write_results(args.output, "GPU benchmark (bench/bench_gpu.py)", cmd.strip(), out)


if __name__ == "__main__":
    main()
