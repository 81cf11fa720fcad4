"""Global mean/variance normalisation from collected statistics (ESPnet ``global_mvn``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.layers.masked_norm import time_mask

logger = logging.getLogger(__name__)


def load_mean_std(stats_file: str | Path, eps: float = 1.0e-20) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std from ESPnet's ``feats_stats.npz`` (keys ``count``, ``sum``, ``sum_square``)."""
    path = Path(stats_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"GlobalMVN: statistics file {path} not found; run the --collect_stats stage first "
            "or set normalize_conf.stats_file"
        )
    with np.load(path) as stats:
        missing = sorted({"count", "sum", "sum_square"} - set(stats.files))
        if missing:
            raise ValueError(
                f"GlobalMVN: {path} lacks {missing} (has {stats.files}); "
                "regenerate it with --collect_stats true"
            )
        count = float(stats["count"])
        if count <= 0:
            raise ValueError(f"GlobalMVN: {path} has count={count}; statistics are empty")
        mean = stats["sum"] / count
        var = stats["sum_square"] / count - mean * mean
    return mean, np.sqrt(np.maximum(var, eps))


class GlobalMVN(AbsNormalize):
    """(B, T, D) -> (B, T, D): ``(x - mean) / std`` with corpus statistics; padding set to 0.

    Args:
        stats_file: ``.npz`` with ``count``, ``sum`` and ``sum_square`` (ESPnet collect_stats).
        norm_means: subtract the mean. norm_vars: divide by the std. eps: variance floor.
    """

    def __init__(
        self,
        stats_file: str | Path,
        norm_means: bool = True,
        norm_vars: bool = True,
        eps: float = 1.0e-20,
    ):
        super().__init__()
        self.stats_file = str(stats_file)
        self.norm_means = norm_means
        self.norm_vars = norm_vars
        mean, std = load_mean_std(stats_file, eps)
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))

    def extra_repr(self) -> str:
        return (
            f"stats_file={self.stats_file}, norm_means={self.norm_means}, "
            f"norm_vars={self.norm_vars}"
        )

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if input.size(-1) != self.mean.numel():
            raise ValueError(
                f"GlobalMVN: features have dimension {input.size(-1)} but {self.stats_file} "
                f"has {self.mean.numel()}; recollect the statistics for this frontend"
            )
        x = input
        if self.norm_means:
            x = x - self.mean
        if self.norm_vars:
            x = x / self.std
        if input_lengths is not None:
            x = x * time_mask(input_lengths.to(x.device), x.size(1), x.dtype).transpose(1, 2)
        return x, input_lengths
