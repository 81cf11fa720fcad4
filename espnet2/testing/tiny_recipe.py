"""The CLI integration tests' variant of :mod:`espnet2.testing.corpus`: 6 train / 2 valid
utterances, a 2-block model trained for 2 epochs, and the token list written the way hubert1
writes it (the literal ``<sos/eos>\\n<unk>`` line)."""

from __future__ import annotations

from pathlib import Path

from espnet2.testing.corpus import GEOMETRY, TINY_YAML, write_corpus

GEOM = GEOMETRY
YAML = (
    TINY_YAML.replace("num_blocks: 1", "num_blocks: 2")
    .replace("max_epoch: 1", "max_epoch: 2")
    .replace("num_threads: 1\n", "")
)


def write_tiny_recipe(tmp_path: Path) -> Path:
    """Write data/{train,valid}/{wav.scp,text}, tokens.txt and tiny.yaml under ``tmp_path``."""
    corpus = write_corpus(tmp_path, n_train=6, n_valid=2, min_samples=2400, max_samples=4000,
                          yaml_text=YAML)
    corpus.tokens.write_text("\n".join([*map(str, range(10)), "<sos/eos>\\n<unk>"]))
    return tmp_path


def data_opts(root: Path, train_dir: Path | None = None, labels: bool = True) -> list[str]:
    """``ssl_train`` data options for the tree of :func:`write_tiny_recipe` (no shape files)."""
    train_dir = train_dir or root / "data" / "train"
    opts = ["--config", str(root / "tiny.yaml"),
            "--train_data_path_and_name_and_type", f"{train_dir}/wav.scp,speech,sound",
            "--valid_data_path_and_name_and_type", f"{root}/data/valid/wav.scp,speech,sound"]
    if labels:
        opts += ["--token_list", str(root / "tokens.txt"),
                 "--train_data_path_and_name_and_type", f"{train_dir}/text,text,text",
                 "--valid_data_path_and_name_and_type", f"{root}/data/valid/text,text,text"]
    return opts
