"""Statistics: device-side running sums, the periodic log line, TensorBoard and PNG curves.

:class:`WeightedStats` accumulates ``sum(value * weight)`` and ``sum(weight)`` per stat on the
training device, so the step never waits for the GPU; one all-reduce + one copy to the host
per log interval turns them into weighted means over every rank's frames.
:class:`Reporter` keeps the per-epoch history ``{epoch: {phase: {key: value}}}`` (saved in
``checkpoint.pth``, ranked by the n-best logic) and writes, on rank 0 only: the log line,
``tensorboard/{train,valid}`` scalars and ``images/<key>.png``. File logging (``train.log``)
belongs to the entry point, which owns the logging configuration: it calls
:func:`configure_logging`.
"""

from __future__ import annotations

import datetime
import io
import logging
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from espnet2.train.distributed import all_reduce_sum
from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


class WeightedStats:
    """Per-key running ``sum(value * weight)``, ``sum(weight)`` plus free "extras" sums.

    ``add`` only keeps references (a list append): the arithmetic runs batched in ``reduce``,
    one ``stack`` over every pending value, so per-step cost stays near zero.
    """

    def __init__(self, device: torch.device, extras: tuple[str, ...] = ()):
        self.device, self.extras = device, extras
        self.keys: tuple[str, ...] = ()
        self.sums = torch.zeros(0, device=device, dtype=torch.float64)
        self.weights = torch.zeros(0, device=device, dtype=torch.float64)
        self.extra = [0.0] * len(extras)  # host-side numbers (counts, seconds)
        self._pending: list[tuple[tuple[str, ...], tuple, object]] = []

    def add(self, stats: dict[str, torch.Tensor], weight: torch.Tensor | float) -> None:
        """``stats``: 0-dim tensors (per-frame means), ``weight``: their frame count."""
        vals = tuple(stats.values())
        if any(getattr(v, "requires_grad", False) for v in vals):
            vals = tuple(v.detach() for v in vals)  # never keep a graph alive until the fold
        self._pending.append((tuple(stats), vals, weight))

    def _fold(self) -> None:
        """Add the pending values into the running sums: a few ops per distinct key set."""
        groups: dict[tuple[str, ...], list] = {}
        for keys, vals, w in self._pending:
            groups.setdefault(keys, []).append((vals, w))
        self._pending = []
        for keys, items in groups.items():
            self._include(keys)
            flat = [v for vals, _ in items for v in vals]
            try:
                v = torch.stack(flat)
            except (TypeError, RuntimeError):  # python numbers or shape-(1,) stats
                v = torch.stack([torch.as_tensor(x, device=self.device).reshape(-1)[0]
                                 for x in flat])
            v = v.to(self.device, torch.float64).reshape(len(items), len(keys))
            w = torch.stack([torch.as_tensor(w, device=self.device) for _, w in items])
            w = w.to(torch.float64).reshape(len(items), 1)
            idx = torch.tensor([self.keys.index(k) for k in keys], device=self.device)
            self.sums.index_add_(0, idx, (v * w).sum(0))
            self.weights.index_add_(0, idx, w.sum().expand(len(keys)))

    def _include(self, keys: tuple[str, ...]) -> None:
        """Extend the layout with new ``keys`` (existing positions are kept)."""
        new = tuple(dict.fromkeys(self.keys + keys))
        if new != self.keys:
            self._reorder(new)

    def _reorder(self, keys: tuple[str, ...]) -> None:
        """Lay the sums out in the order of ``keys`` (a superset of the current keys)."""
        idx = torch.tensor([keys.index(k) for k in self.keys], device=self.device,
                           dtype=torch.long)
        sums = torch.zeros(len(keys), device=self.device, dtype=torch.float64)
        weights = torch.zeros_like(sums)
        self.sums = sums.index_copy_(0, idx, self.sums)
        self.weights = weights.index_copy_(0, idx, self.weights)
        self.keys = keys

    def reduce(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """All-reduce over ranks; returns (weighted means, total weights, summed extras).

        Every rank must call this with the same keys (the trainer calls it at the same
        batches everywhere). Keys with zero total weight are left out.
        """
        self._fold()
        if dist.is_available() and dist.is_initialized():
            # ranks may have seen different keys (or none): agree on one layout first
            seen: list = [None] * dist.get_world_size()
            dist.all_gather_object(seen, self.keys)
            union = tuple(dict.fromkeys(k for keys in seen for k in keys))
            if union != self.keys:
                self._reorder(union)
        extra = torch.tensor(self.extra, dtype=torch.float64, device=self.device)
        flat = all_reduce_sum(torch.cat([self.sums, self.weights, extra])).tolist()
        k = len(self.keys)
        sums, weights = flat[:k], flat[k:2 * k]
        means = {key: s / w for key, s, w in zip(self.keys, sums, weights) if w > 0}
        return means, dict(zip(self.keys, weights)), dict(zip(self.extras, flat[2 * k:]))

    def reset(self) -> None:
        self._pending = []
        self.sums.zero_()
        self.weights.zero_()
        self.extra = [0.0] * len(self.extras)


class EpochTotals:
    """Host-side weighted sums over a whole epoch, fed by :meth:`WeightedStats.reduce`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, means: dict[str, float], weights: dict[str, float]) -> None:
        for k, m in means.items():
            self.sums[k] = self.sums.get(k, 0.0) + m * weights[k]
            self.weights[k] = self.weights.get(k, 0.0) + weights[k]

    def means(self) -> dict[str, float]:
        return {k: s / self.weights[k] for k, s in self.sums.items() if self.weights[k] > 0}

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.weights = dict(state["sums"]), dict(state["weights"])


def peak_memory_gb(device: torch.device) -> float:
    """CUDA ``max_memory_allocated`` on GPU, else the process's peak RSS (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def configure_logging(output_dir: Path | None, rank: int = 0, level: str = "INFO") -> None:
    """For entry points: rank 0 logs ``level`` to stderr and ``output_dir/train.log``; other
    ranks log warnings only (skipped updates name their utterances on every rank)."""
    fmt = f"%(asctime)s [rank{rank}] (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if rank == 0 and output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "train.log"))
    logging.basicConfig(level=level if rank == 0 else "WARNING", format=fmt, handlers=handlers,
                        force=True)


class Reporter:
    """Epoch history, log lines, TensorBoard scalars and PNG curves (outputs on rank 0 only)."""

    def __init__(self, output_dir: Path, is_main: bool = True, use_tensorboard: bool = True,
                 use_matplotlib: bool = True):
        self.output_dir, self.is_main = Path(output_dir), is_main
        self.use_tensorboard, self.use_matplotlib = use_tensorboard and is_main, use_matplotlib
        self.history: dict[int, dict[str, dict[str, float]]] = {}
        self._last_plot: float | None = None  # monotonic time of the last PNG refresh
        self._plotted_epoch: int | None = None
        self._writers: dict = {}
        self.tty = is_main and sys.stdout.isatty()

    # --- history -----------------------------------------------------------------------
    def record(self, epoch: int, phase: str, stats: dict[str, float]) -> None:
        self.history.setdefault(epoch, {})[phase] = dict(stats)

    def state_dict(self) -> dict:
        return {"history": {e: {p: dict(s) for p, s in h.items()} for e, h in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.history = {int(e): {p: dict(s) for p, s in h.items()}
                        for e, h in state["history"].items()}

    # --- outputs -------------------------------------------------------------------------
    def _writer(self, phase: str):
        if phase not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[phase] = SummaryWriter(str(self.output_dir / "tensorboard" / phase))
        return self._writers[phase]

    def log_interval(self, epoch: int, batch: int, num_batches: int, step: int,
                     stats: dict[str, float], extras: dict[str, float]) -> None:
        """One line: position, every stat, then lr, grad norm, throughput, memory, ETA."""
        if not self.is_main:
            return
        eta = datetime.timedelta(seconds=int(extras.pop("eta_s", 0.0)))
        parts = [f"{k}={_fmt(v)}" for k, v in {**stats, **extras}.items()]
        if self.tty:
            sys.stdout.write("\r\033[K")  # clear the progress bar before the log line
        logger.info("%depoch:%d/%d step:%d %s eta=%s", epoch, batch, num_batches, step,
                    " ".join(parts), eta)
        if self.use_tensorboard:
            w = self._writer("train")
            for k, v in {**stats, **extras}.items():
                w.add_scalar(f"iter/{k}", v, step)

    def progress(self, epoch: int, batch: int, num_batches: int) -> None:
        """A one-line progress bar, only when stdout is a terminal (never in log files)."""
        if self.tty:
            done = int(30 * batch / max(1, num_batches))
            sys.stdout.write(f"\r{epoch}epoch [{'#' * done}{'.' * (30 - done)}] "
                             f"{batch}/{num_batches}")
            sys.stdout.flush()

    def end_epoch(self, epoch: int) -> None:
        """Log the epoch summary, write TensorBoard epoch scalars and refresh the PNG curves."""
        if not self.is_main:
            return
        for phase, stats in self.history.get(epoch, {}).items():
            logger.info("%depoch %s: %s", epoch, phase,
                        " ".join(f"{k}={_fmt(v)}" for k, v in stats.items()))
            if self.use_tensorboard:
                w = self._writer(phase)
                for k, v in stats.items():
                    w.add_scalar(f"epoch/{k}", v, epoch)
                w.flush()
        if self.use_matplotlib and self._plot_due():
            self.plot()
            self._plotted_epoch = epoch

    #: Epoch-end PNG refreshes are rate-limited (matplotlib import + one savefig per stat cost
    #: ~3 s on a small CPU: a large share of a tiny run's epoch, nothing for a real one).
    PLOT_MIN_INTERVAL_S = 60.0

    def _plot_due(self) -> bool:
        now = time.monotonic()
        if self._last_plot is not None and now - self._last_plot < self.PLOT_MIN_INTERVAL_S:
            return False
        self._last_plot = now
        return True

    def plot(self) -> None:
        """``images/<key>.png``: train and valid values of ``key`` per epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = dict.fromkeys(k for h in self.history.values() for s in h.values() for k in s)
        for key in keys:
            fig, ax = plt.subplots(figsize=(6, 4))
            for phase in ("train", "valid"):
                pts = sorted((e, h[phase][key]) for e, h in self.history.items()
                             if key in h.get(phase, {}))
                if pts:
                    ax.plot(*zip(*pts), marker=".", label=phase)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            plt.close(fig)
            with atomic_write(self.output_dir / "images" / f"{key}.png", "wb") as f:
                f.write(buf.getvalue())

    def close(self) -> None:
        latest = max(self.history, default=None)
        if self.is_main and self.use_matplotlib and latest not in (None, self._plotted_epoch):
            self.plot()  # the final curves are always written
            self._plotted_epoch = latest
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        if self.tty:
            sys.stdout.write("\n")
