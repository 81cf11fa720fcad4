"""The training loop: DDP, AMP, gradient accumulation, clipping, skip-on-NaN, checkpoints.

The model contract (doc/contracts.md): ``model(**batch) -> (loss, stats, weight)`` with ``loss``
a per-frame mean over ``weight`` frames; ``model.after_optimizer_step(step)`` (if defined) runs
once per applied optimizer update. Read :meth:`Trainer._micro_step` and :meth:`Trainer._update`
for the whole step.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from espnet2.train import checkpoint as ckpt
from espnet2.train.average_nbest import (
    average_nbest_models,
    kept_epochs,
    prune_epoch_files,
    ranked_epochs,
)
from espnet2.train.distributed import DistInfo, all_reduce_sum
from espnet2.train.epochs import Segment, epoch_segments, skip_batches
from espnet2.train.options import BatchLoader, TrainerOptions
from espnet2.train.reporter import EpochTotals, Reporter, WeightedStats, peak_memory_gb

logger = logging.getLogger(__name__)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


class TrainingDiverged(RuntimeError):
    """Raised on every rank after ``max_consecutive_skips`` skipped updates in a row."""


class Trainer:
    """Runs epochs of ``train_loader`` (+ ``valid_loader``) on ``model``; see ``run``."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None,
                 train_loader: BatchLoader, valid_loader: BatchLoader | None,
                 options: TrainerOptions, dist: DistInfo | None = None):
        self.opts, self.dist = options, dist or DistInfo()
        options.output_dir.mkdir(parents=True, exist_ok=True)  # every rank: shared or local fs
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ddp = self.model
        if self.dist.world_size > 1:
            self.ddp = self._wrap_ddp()
        self._after_step = getattr(self.model, "after_optimizer_step", None)
        self.amp_dtype = self._resolve_amp_dtype()
        fp16 = options.use_amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type) if fp16 else None
        self.reporter = Reporter(options.output_dir, self.dist.is_main,
                                 options.use_tensorboard, options.use_matplotlib)
        self.meter = WeightedStats(self.device, extras=("audio_samples", "data_wait_s"))
        self.totals = EpochTotals()
        self.epoch, self.start_batch, self.step = 1, 0, 0
        self._batch_counts: dict[tuple[int, int], int] = {}
        self.skipped, self.consecutive_skips = 0, 0

    def _wrap_ddp(self) -> DistributedDataParallel:
        o = self.opts
        for buf in self.model.buffers():  # every rank starts from rank 0's buffers (teacher...)
            dist.broadcast(buf, src=0)
        with warnings.catch_warnings():
            # torch >= 2.12 renames broadcast_buffers; the old name works on every torch >= 2.6
            warnings.filterwarnings("ignore", ".*broadcast_buffers.*", FutureWarning)
            return DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=o.unused_parameters, bucket_cap_mb=o.ddp_bucket_cap_mb,
                gradient_as_bucket_view=o.gradient_as_bucket_view,
                broadcast_buffers=o.ddp_broadcast_buffers)

    def _resolve_amp_dtype(self) -> torch.dtype:
        if not self.opts.use_amp or self.opts.amp_dtype == "float16":
            return torch.float16
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            logger.warning("this GPU has no bfloat16: AMP falls back to float16 + GradScaler")
            return torch.float16
        return torch.bfloat16

    def _autocast(self):
        if not self.opts.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ the step
    def _micro_step(self, batch: dict, n_micro: int, sync: bool):
        """Forward + backward of one micro-batch; gradients accumulate in ``.grad``."""
        batch = _to_device(batch, self.device)
        # DDP all-reduces gradients during backward; skip that on accumulation micro-steps.
        no_sync = self.ddp.no_sync() if self.ddp is not self.model and not sync else None
        with no_sync or contextlib.nullcontext():
            with self._autocast():
                loss, stats, weight = self.ddp(**batch)
            scaled = loss
            if self.dist.world_size > 1:
                # DDP averages gradients over ranks: scaling by this rank's share of all frames
                # makes the update the per-frame mean over all ranks (one collective, pre-backward).
                weight = torch.as_tensor(weight, dtype=torch.float32, device=self.device)
                total = all_reduce_sum(weight.detach().clone()).clamp(min=1.0)  # 0 if no frames
                scaled = loss * (weight.detach() * self.dist.world_size / total)
            if n_micro > 1:
                scaled = scaled / n_micro  # the window's gradient: mean over its micro-batches
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss.detach(), stats, weight

    def _update(self, window_loss: torch.Tensor) -> tuple[bool, torch.Tensor]:
        """Clip, agree across ranks whether to skip, step. Returns (applied, grad norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # measure and clip the true gradient
        if self.opts.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.opts.grad_clip,
                                                   self.opts.grad_clip_type)
        else:
            gnorm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None], self.opts.grad_clip_type)
        # The one host sync per update: all ranks must take the same branch or the next
        # collective hangs, so "any rank saw a non-finite loss or grad norm" is one all-reduce.
        if self.dist.world_size > 1:
            bad = (~torch.isfinite(gnorm.float() + window_loss)).float()
            skip = all_reduce_sum(bad).item() > 0
        else:
            skip = not torch.isfinite(gnorm + window_loss).item()
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()  # fp16: back off the loss scale
            return False, gnorm
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()  # schedules count optimizer updates, not batches
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self._after_step is not None:
            self._after_step(self.step)  # EMA teacher / codebook updates: once per update
        return True, gnorm

    # ------------------------------------------------------------------ epochs
    def _num_batches(self, loader: BatchLoader, epoch: int) -> int:
        """Batches every rank runs in data epoch ``epoch``: the minimum over ranks (a mismatch
        is logged). Cached per loader and epoch (one all-reduce each)."""
        key = (id(loader), epoch)
        if key in self._batch_counts:
            return self._batch_counts[key]
        n = loader.num_batches(epoch)
        if self.dist.world_size > 1:
            t = torch.tensor([n, -n], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            hi, lo = int(t[0]), -int(t[1])
            if hi != lo:
                logger.warning("epoch %d: ranks have %d..%d batches; all run %d so none waits "
                               "for a missing rank", epoch, lo, hi, lo)
            n = lo
        self._batch_counts[key] = n
        return n

    def _train_segments(self, epoch: int) -> list[Segment]:
        """Data-epoch slices of training epoch ``epoch``: the whole data epoch, or with
        ``num_iters_per_epoch`` the next slice of the data stream (ESPnet carries the rest of a
        data epoch into the next training epoch)."""
        cap = self.opts.num_iters_per_epoch
        if cap is None:
            return [(epoch, 0, self._num_batches(self.train_loader, epoch))]
        return epoch_segments(epoch, cap, lambda r: self._num_batches(self.train_loader, r))

    def _segment_batches(self, segments: list[Segment]):
        """Collated batches of ``segments`` in order (None if a loader runs short)."""
        for r, first, end in segments:
            batches = iter(self.train_loader.iterate(r, first))
            for _ in range(end - first):
                yield next(batches, None)
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stop a loader (and its workers) cut short by the cap

    def _train_epoch(self, epoch: int) -> None:
        o, acc = self.opts, self.opts.accum_grad
        segments = self._train_segments(epoch)
        n = sum(end - first for _, first, end in segments)
        start, self.start_batch = self.start_batch, 0
        if start == 0:
            self.totals = EpochTotals()
        log_every = o.log_interval or min(100, max(1, n // 10))
        self.ddp.train()
        batches = self._segment_batches(skip_batches(segments, start))
        self._t_epoch = self._t_interval = time.perf_counter()
        self._start, lens, window, n_micro, gnorms = start, [], [], 1, []
        for b in range(start, n):
            t0 = time.perf_counter()
            batch = next(batches, None)
            self.meter.extra[1] += time.perf_counter() - t0
            if batch is None:
                raise RuntimeError(f"rank {self.dist.rank}: the train loader yielded {b} of the "
                                   f"{n} batches it announced for epoch {epoch}; its "
                                   "num_batches() and iterate() disagree (other ranks will wait "
                                   "until the process-group timeout)")
            utt_ids = batch.pop("utt_id", None)
            if o.no_forward_run:
                continue
            if b == start or b % acc == 0:
                n_micro, window, wloss = min(acc, n - b), [], None
            boundary = (b + 1) % acc == 0 or b + 1 == n
            lens.append(batch.get("speech_lengths"))
            try:
                loss, stats, weight = self._micro_step(batch, n_micro, sync=boundary)
            except Exception:
                logger.error("rank %d: step failed in epoch %d batch %d; utt ids: %s",
                             self.dist.rank, epoch, b, utt_ids)
                raise
            window.append((stats if "loss" in stats else {"loss": loss, **stats}, weight,
                           utt_ids))
            wloss = loss if wloss is None else wloss + loss
            if boundary:
                self._end_window(epoch, b, window, wloss, gnorms)
            if (b + 1) % log_every == 0 or b + 1 == n:
                self._log(epoch, b + 1, n, lens, gnorms)
                lens, gnorms = [], []
            elif self.reporter.tty:
                self.reporter.progress(epoch, b + 1, n)
            if o.max_steps is not None and self.step >= o.max_steps:
                break
        self._flush_meter()
        self.reporter.record(epoch, "train", {**self.totals.means(),
                                              "lr": self.optimizer.param_groups[0]["lr"]})

    def _end_window(self, epoch: int, b: int, window: list, wloss: torch.Tensor,
                    gnorms: list) -> None:
        """Update (or skip), book the window's stats, save every ``save_every_n_steps``."""
        step_before = self.step
        applied, gnorm = self._update(wloss)
        if not applied:
            self._on_skip(epoch, b, window, wloss, gnorm)
            return
        self.consecutive_skips = 0
        for stats, weight, _ in window:
            self.meter.add(stats, weight)
        gnorms.append(gnorm)
        n_save = self.opts.save_every_n_steps
        if n_save and self.step // n_save > step_before // n_save:
            self._flush_meter()
            self.save_checkpoint(epoch, b + 1)  # resumes at the next batch

    def _on_skip(self, epoch: int, b: int, window: list, wloss: torch.Tensor,
                 gnorm: torch.Tensor) -> None:
        """Count a skipped update, name its utterances, stop after too many in a row."""
        self.skipped += 1
        self.consecutive_skips += 1
        if not torch.isfinite(wloss):
            why = f"non-finite loss ({float(wloss)}) on this rank"
        elif not torch.isfinite(gnorm):
            why = (f"non-finite grad norm ({float(gnorm)}; gradients are averaged over ranks, "
                   "the cause may be on another rank)")
        else:
            why = "another rank had a non-finite loss"
        ids = [u for _, _, us in window for u in (us or [])]
        logger.warning("rank %d epoch %d batch %d: %s; update skipped (%d in a row, %d total). "
                       "utt ids on this rank: %s", self.dist.rank, epoch, b, why,
                       self.consecutive_skips, self.skipped, ids)
        if self.consecutive_skips >= self.opts.max_consecutive_skips:
            self._flush_meter()
            self.save_checkpoint(epoch, b + 1)
            raise TrainingDiverged(
                f"{self.consecutive_skips} consecutive updates skipped (non-finite loss or "
                f"gradient) at epoch {epoch} batch {b + 1}, step {self.step}. A checkpoint was "
                f"saved in {self.opts.output_dir}. Lower the lr, raise warmup, check the "
                "utterances logged above, or raise --max_consecutive_skips.")

    def _flush_meter(self) -> dict[str, float]:
        means, weights, extra = self.meter.reduce()  # collective: every rank calls it here
        self.totals.add(means, weights)
        self.meter.reset()
        return {**means, **extra}

    def _log(self, epoch: int, done: int, n: int, lens: list, gnorms: list) -> None:
        lens = [t.reshape(-1) for t in lens if t is not None]
        if lens:
            self.meter.extra[0] += float(torch.cat(lens).sum())
        stats = self._flush_meter()
        now = time.perf_counter()
        wall, self._t_interval = now - self._t_interval, now
        ws = self.dist.world_size
        per_batch = (now - self._t_epoch) / max(1, done - self._start)
        remaining = (n - done) + (self.opts.max_epoch - epoch) * n
        if self.opts.max_steps is not None:
            left = (self.opts.max_steps - self.step) * self.opts.accum_grad
            remaining = min(remaining, left)
        extras = {
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": float(torch.stack(gnorms).float().mean()) if gnorms else 0.0,
            "audio_s_per_s": stats.pop("audio_samples") / self.opts.fs / max(wall, 1e-9),
            "data_wait": stats.pop("data_wait_s") / ws / max(wall, 1e-9),
            "peak_mem_gb": peak_memory_gb(self.device),
            "skipped": float(self.skipped),
            "eta_s": per_batch * remaining,
        }
        if self.scaler is not None:
            extras["loss_scale"] = self.scaler.get_scale()
        self.reporter.log_interval(epoch, done, n, self.step, stats, extras)

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        """Weighted means of the validation stats over every rank; recorded as ``valid``."""
        self.model.eval()  # the bare module: no DDP collectives, ranks may differ in batches
        meter = WeightedStats(self.device)
        for batch in self.valid_loader.iterate(epoch, 0):
            batch.pop("utt_id", None)
            batch = _to_device(batch, self.device)
            with self._autocast():
                loss, stats, weight = self.model(**batch)
            meter.add(stats if "loss" in stats else {"loss": loss, **stats},
                      torch.as_tensor(weight, dtype=torch.float32, device=self.device))
        means = meter.reduce()[0]
        self.reporter.record(epoch, "valid", means)
        return means

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        """Train from epoch 1 (or the checkpoint with ``resume``) to ``max_epoch``."""
        o = self.opts
        if not (o.resume and self.resume()):
            ckpt.seed_everything(o.seed + self.dist.rank)
        try:
            for epoch in range(self.epoch, o.max_epoch + 1):
                self.epoch = epoch
                self._train_epoch(epoch)
                if o.no_forward_run:
                    continue
                if o.validate_every_epoch and self.valid_loader is not None:
                    self.validate(epoch)
                self._end_epoch(epoch)
                if self._should_stop(epoch):
                    break
            if self.dist.is_main and not o.no_forward_run:
                average_nbest_models(o.output_dir, self.reporter.history,
                                     o.best_model_criterion, o.keep_nbest_models)
        finally:
            self.reporter.close()

    def _end_epoch(self, epoch: int) -> None:
        o = self.opts
        self.reporter.end_epoch(epoch)
        if self.dist.is_main:  # weights first: a crash before the checkpoint redoes this epoch
            ckpt.save_model_weights(o.output_dir / f"{epoch}epoch.pth", self.model)
            ckpt.link_latest(o.output_dir, f"{epoch}epoch.pth")
        self.save_checkpoint(epoch + 1, 0)
        if self.dist.is_main:
            keep = kept_epochs(self.reporter.history, o.best_model_criterion,
                               max(o.keep_nbest_models), epoch)
            prune_epoch_files(o.output_dir, keep)
            if o.nbest_averaging_interval and epoch % o.nbest_averaging_interval == 0:
                average_nbest_models(o.output_dir, self.reporter.history, o.best_model_criterion,
                                     o.keep_nbest_models, suffix=f"till{epoch}epoch")

    def _should_stop(self, epoch: int) -> bool:
        o = self.opts
        if o.max_steps is not None and self.step >= o.max_steps:
            logger.info("max_steps=%d reached at epoch %d", o.max_steps, epoch)
            return True
        if o.patience is not None:
            ranked = ranked_epochs(self.reporter.history, *o.early_stopping_criterion)
            if ranked and epoch - ranked[0] >= o.patience:
                logger.info("early stop: %s did not improve for %d epochs (best: epoch %d)",
                            ".".join(o.early_stopping_criterion), o.patience, ranked[0])
                return True
        return False

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, epoch: int, batch: int) -> None:
        """Write ``checkpoint.pth`` resuming at ``batch`` of ``epoch``; every rank must call."""
        rng = ckpt.rng_state()
        rngs = [rng]
        if self.dist.world_size > 1:  # each rank's RNG (masking, dropout) resumes exactly
            rngs = [None] * self.dist.world_size
            dist.all_gather_object(rngs, rng)
        if not self.dist.is_main:
            return
        ckpt.save_checkpoint(self.opts.output_dir / ckpt.CHECKPOINT, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "counters": {"epoch": epoch, "batch": batch, "step": self.step,
                         "skipped": self.skipped, "consecutive_skips": self.consecutive_skips},
            "rng": rngs,
            "reporter": self.reporter.state_dict(),
            "epoch_totals": self.totals.state_dict(),
        })

    def resume(self) -> bool:
        """Restore everything from the latest complete checkpoint; False when there is none."""
        found = ckpt.load_latest_checkpoint(self.opts.output_dir)
        if found is None:
            logger.info("resume: no checkpoint in %s, starting from scratch", self.opts.output_dir)
            return False
        state, path = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        c = state["counters"]
        self.epoch, self.start_batch, self.step = c["epoch"], c["batch"], c["step"]
        self.skipped = c["skipped"]  # consecutive skips restart at 0: the user may have fixed it
        self.reporter.load_state_dict(state["reporter"])
        self.totals.load_state_dict(state["epoch_totals"])
        if len(state["rng"]) == self.dist.world_size:
            ckpt.set_rng_state(state["rng"][self.dist.rank])
        else:
            logger.warning("checkpoint has RNG states of %d ranks, this run has %d: reseeding",
                           len(state["rng"]), self.dist.world_size)
            ckpt.seed_everything(self.opts.seed + self.dist.rank + self.step)
        logger.info("resumed from %s: epoch %d batch %d, step %d", path, self.epoch,
                    self.start_batch, self.step)
        return True
