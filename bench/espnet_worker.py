"""ESPnet's own tiny HuBERT step, run with an ESPnet venv's Python (bench_step.py, espnet section).

Builds the model through ESPnet's ``espnet2.tasks.ssl.SSLTask.build_model`` from the same
configuration as bench/models.py (7-layer 256-channel wav2vec CNN, Linear 256->256, 2-block
256-dim post-LN Transformer with conv positional embedding, HuBERT loss over 100 classes,
mask length 10) and times the same bare loop (forward, backward, clip 5, Adam, zero_grad) on
batches of 8 x 1.2 s of Gaussian audio. Prints ``BENCH_RESULT {json}`` with its peak RSS.

This file must never import this repository's ``espnet2`` (same package name): only this
directory is on ``sys.path`` (Python puts the script's directory first), never the repo root.

    /tmp/espnet_venv/bin/python bench/espnet_worker.py [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common  # bench/common.py (stdlib-only at import time)

SHAPES = [[256, 10, 5]] + [[256, 3, 2]] * 4 + [[256, 2, 2]] * 2
CONFIG = f"""\
frontend: wav2vec_cnn
frontend_conf: {{shapes: {SHAPES}, norm_mode: group_norm, conv_mode: standard, bias: false,
                fs: 16k}}
normalize: null
specaug: null
preencoder: linear
preencoder_conf: {{output_size: 256}}
encoder: transformer
encoder_conf: {{output_size: 256, attention_heads: 4, linear_units: 1024, num_blocks: 2,
               dropout_rate: 0.1, attention_dropout_rate: 0.1, input_layer: wav2vec,
               normalize_before: false, pos_enc_layer_type: conv}}
loss: [{{name: hubert, conf: {{num_classes: 100, final_dim: 128}}}}]
util: [{{name: mask, conf: {{mask_length: 10}}}}]
"""


def num_frames(n: int) -> int:
    for _, k, s in SHAPES:
        n = (n - k) // s + 1
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.2)
    p.add_argument("--serve", action="store_true", help="step server (common.StepServer)")
    args = p.parse_args()
    t0 = time.perf_counter()
    import torch

    from espnet2.tasks.ssl import SSLTask

    import_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        conf, tokens = Path(tmp) / "conf.yaml", Path(tmp) / "tokens.txt"
        conf.write_text(CONFIG)
        tokens.write_text("".join(f"{i}\n" for i in range(100)))
        parsed = SSLTask.get_parser().parse_args(["--config", str(conf), "--token_list",
                                                  str(tokens)])
        model = SSLTask.build_model(parsed).train()
    n = int(args.seconds * 16000)
    frames = num_frames(n)
    g = torch.Generator().manual_seed(0)
    batches = [{"speech": torch.randn(args.batch, n, generator=g),
                "speech_lengths": torch.full((args.batch,), n),
                "text": torch.randint(0, 100, (args.batch, frames), generator=g),
                "text_lengths": torch.full((args.batch,), frames)} for _ in range(2)]
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    setup = common.rss_mb()

    def step(i: int) -> None:
        loss, _, _ = model(**batches[i % 2])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if args.serve:
        counter = iter(range(1, 10**9))
        common.serve_steps(lambda: step(next(counter)), setup_rss_mb=setup, import_s=import_s,
                           note=f"(ESPnet venv: torch {torch.__version__})",
                           params=sum(q.numel() for q in model.parameters()))
        return
    step(0)
    times = [common.timed(lambda i=i: step(i)) for i in range(1, args.steps + 1)]
    common.worker_result(s_per_step=statistics.median(times), setup_rss_mb=setup,
                         import_s=import_s, threads=args.threads,
                         note=f"(ESPnet venv: torch {torch.__version__})",
                         params=sum(q.numel() for q in model.parameters()))


if __name__ == "__main__":
    main()
