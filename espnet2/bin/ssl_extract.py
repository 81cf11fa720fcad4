"""Extract per-layer hidden states of a pre-trained SSL model for a data dir.

    python -m espnet2.bin.ssl_extract --exp_dir exp/ssl_train_hubert_raw \
        --data_dir dump/raw/test --layers 1 2 --output_dir exp/feats/test
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from espnet2.ssl.pretrained import setup_cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="experiment dir, model file or packed archive")
    p.add_argument("--model_file", default=None, help="model file inside exp_dir (default: best)")
    p.add_argument("--data_dir", required=True, type=Path, help="Kaldi dir with wav.scp")
    p.add_argument("--layers", type=int, nargs="*", default=None, help="0-based; default all")
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--half", action="store_true", help="store float16")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    device = setup_cli(args.num_threads, args.device)
    from espnet2.data.dataset import SSLDataset
    from espnet2.ssl.extract import iter_hidden_states, write_hidden_states
    from espnet2.ssl.pretrained import load_model

    model, config, _ = load_model(args.exp_dir, args.model_file, device)
    fs = model.frontend.fs if hasattr(model.frontend, "fs") else None
    layers = args.layers if args.layers else list(range(model.encoder.num_layers()))
    dataset = SSLDataset(str(args.data_dir / "wav.scp"), fs=fs)
    lengths = {u: dataset.num_samples(u) for u in dataset.keys()}  # headers only

    def load(utt: str):
        return dataset[utt]["speech"]

    stream = iter_hidden_states(model, lengths, load, layers, args.batch_size, device)
    n = write_hidden_states(stream, layers, args.output_dir, half=args.half)
    logging.info("wrote layers %s of %d utterances to %s", layers, n, args.output_dir)


if __name__ == "__main__":
    main()
