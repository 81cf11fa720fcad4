"""Typed trainer options (ESPnet names and defaults) and the loader protocol the trainer reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

Criterion = tuple[str, str, str]  # (phase "train"|"valid", stat key, "min"|"max")


@runtime_checkable
class BatchLoader(Protocol):
    """What the trainer needs from a data loader (``espnet2.data.loader.EpochLoader``).

    Batches are this rank's share, already sharded and evened across ranks. A batch is
    ``{"utt_id": list[str], "speech": (B, N), "speech_lengths": (B,), ["text": (B, T) long,
    -1 padded, "text_lengths": (B,)]}``. Randomness (shuffling, crops) must be a function of
    ``(seed, epoch, batch index)`` so that ``iterate(epoch, start_batch)`` after a resume yields
    exactly the batches an uninterrupted run would have seen.
    """

    def num_batches(self, epoch: int) -> int:
        """Number of batches this rank yields in ``epoch`` (1-based)."""
        ...

    def iterate(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        """Yield this rank's batches of ``epoch``, skipping the first ``start_batch``."""
        ...


def _default_criteria() -> list[Criterion]:
    return [
        ("train", "loss", "min"),
        ("valid", "loss", "min"),
        ("train", "acc", "max"),
        ("valid", "acc", "max"),
    ]


@dataclass
class TrainerOptions:
    """Everything :class:`espnet2.train.trainer.Trainer` reads; built by the task from the CLI."""

    output_dir: Path
    """Experiment directory (``exp/ssl_<tag>``): checkpoints, images/, tensorboard/."""
    max_epoch: int = 40
    """Number of epochs (ESPnet ``--max_epoch``, default 40)."""
    max_steps: int | None = None
    """Stop after this many optimizer updates (fairseq ``max_update``); the epoch in progress
    is validated and saved. Also the horizon of the tri-stage / cosine schedulers."""
    num_iters_per_epoch: int | None = None
    """Batches per training epoch (ESPnet ``--num_iters_per_epoch``): epoch ``e`` runs batches
    ``[(e-1)·N, e·N)`` of the stream of shuffled data epochs, so the rest of a data epoch is
    carried into the next training epoch (``espnet2/train/epochs.py``)."""
    accum_grad: int = 1
    """Micro-batches per optimizer update (ESPnet ``--accum_grad``; fairseq ``update_freq``)."""
    grad_clip: float = 5.0
    """Clip the gradient norm to this value; <= 0 only measures it (ESPnet ``--grad_clip``)."""
    grad_clip_type: float = 2.0
    """Norm type of the clipping (ESPnet ``--grad_clip_type``; ``inf`` for max-norm)."""
    use_amp: bool = False
    """Autocast forward in ``amp_dtype`` (ESPnet ``--use_amp``)."""
    amp_dtype: str = "bfloat16"
    """``bfloat16`` (no loss scaling; falls back to float16 on GPUs without bf16) or
    ``float16`` (with :class:`torch.amp.GradScaler`)."""
    log_interval: int | None = None
    """Batches between log lines; None = ``min(100, max(1, num_batches // 10))``."""
    fs: int = 16000
    """Sampling rate of ``speech``, only used to report audio seconds per second."""
    keep_nbest_models: list[int] = field(default_factory=lambda: [10])
    """Epoch files kept per criterion and the n of each ``ave_{n}best`` average (ESPnet)."""
    nbest_averaging_interval: int = 0
    """Every this many epochs also write ``*.ave_{n}best.till{epoch}epoch.pth``; 0 = never."""
    best_model_criterion: list[Criterion] = field(default_factory=_default_criteria)
    """(phase, stat key, min|max) ranking epochs; keys never reported are skipped with a note."""
    patience: int | None = None
    """Stop when ``early_stopping_criterion`` has not improved for this many epochs."""
    early_stopping_criterion: Criterion = ("valid", "loss", "min")
    """Criterion watched by ``patience`` (ESPnet default)."""
    save_every_n_steps: int | None = None
    """Also write ``checkpoint.pth`` every this many updates (mid-epoch, resumable)."""
    max_consecutive_skips: int = 20
    """Stop with an error (after saving a checkpoint) after this many skipped updates in a row
    (non-finite loss or gradient norm on any rank)."""
    seed: int = 0
    """Trainer RNG seed; rank r uses ``seed + r`` (model init is synchronised by DDP)."""
    resume: bool = False
    """Continue from ``output_dir/checkpoint.pth`` (or its previous complete copy)."""
    use_tensorboard: bool = True
    """Write scalars under ``output_dir/tensorboard/{train,valid}``."""
    use_matplotlib: bool = True
    """Write one PNG curve per reported stat under ``output_dir/images`` each epoch."""
    no_forward_run: bool = False
    """Iterate the loaders only (checks data, measures loader speed); no model call."""
    unused_parameters: bool = False
    """DDP ``find_unused_parameters`` (ESPnet ``--unused_parameters``)."""
    validate_every_epoch: bool = True
    """Run the validation loader at the end of each epoch."""
    ddp_bucket_cap_mb: int = 25
    """DDP gradient bucket size in MiB (torch default 25)."""
    gradient_as_bucket_view: bool = True
    """DDP grads alias the all-reduce buckets (saves one copy of the gradients)."""
    ddp_broadcast_buffers: bool = False
    """Broadcast buffers from rank 0 every forward. Off: EMA teachers and codebooks are updated
    identically on every rank, and re-broadcasting them each step costs bandwidth."""

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.best_model_criterion = [tuple(c) for c in self.best_model_criterion]
        self.early_stopping_criterion = tuple(self.early_stopping_criterion)
        if isinstance(self.keep_nbest_models, int):
            self.keep_nbest_models = [self.keep_nbest_models]
        problems = []
        if self.accum_grad < 1:
            problems.append(f"accum_grad={self.accum_grad} must be >= 1")
        if self.max_epoch < 1:
            problems.append(f"max_epoch={self.max_epoch} must be >= 1")
        if self.amp_dtype not in ("bfloat16", "float16"):
            problems.append(f"amp_dtype={self.amp_dtype!r} must be 'bfloat16' or 'float16'")
        for c in [*self.best_model_criterion, self.early_stopping_criterion]:
            if len(c) != 3 or c[0] not in ("train", "valid") or c[2] not in ("min", "max"):
                problems.append(f"criterion {c!r} must be (train|valid, key, min|max)")
        if self.max_consecutive_skips < 1:
            problems.append(f"max_consecutive_skips={self.max_consecutive_skips} must be >= 1")
        if problems:
            raise ValueError("Invalid trainer options: " + "; ".join(problems))
