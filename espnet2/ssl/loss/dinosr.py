"""DinoSR: self-distillation with online clustering (Liu et al., 2023, arXiv:2305.10005).

Note on expected values: with the reference Base recipe the authors' training loss is about 1.4
at 200k updates. A loss near 0.2 (with target perplexity near 1) means the codebooks collapsed:
every frame is assigned to a handful of codewords and the prediction is trivial. This module
logs a warning (once) when the training target perplexity is below ``collapse_ppl`` at one of
the checks made every 100 optimizer updates.

Port decision: the targets are the teacher's block outputs as returned by ``return_all_hs``
(post-block, i.e. after the residual add and, for post-LN blocks, the LayerNorm). The reference
uses fairseq's ``layer_result`` (the FFN output before the final residual add and LayerNorm);
instance normalisation of each layer removes most of the scale difference.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from espnet2.ssl.loss.abs_loss import AbsSSLLoss, LossNeeds, LossOutput, SSLForwardRecord

logger = logging.getLogger(__name__)

CHECK_EVERY = 100
"""Optimizer updates between the checks that need a host sync (collapse, dead codewords)."""


def masked_instance_norm(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each utterance and channel over its valid frames, in fp32.

    Args:
        x: (B, T, D).
        valid: (B, T) bool, True on real frames.

    Returns:
        (B, T, D) fp32, zero mean and unit (biased) variance over valid frames; 0 on padding.

    The DinoSR reference applies ``F.instance_norm`` on (B, D, T) *including* padded frames;
    excluding them makes targets independent of how much padding a batch has.
    """
    x = x.float()
    w = valid[..., None].float()  # (B, T, 1)
    n = w.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
    mean = (x * w).sum(1, keepdim=True) / n
    var = ((x - mean).pow(2) * w).sum(1, keepdim=True) / n
    return (x - mean) * torch.rsqrt(var + eps) * w


def _at(layers: list[torch.Tensor], select: torch.Tensor) -> torch.Tensor:
    """K (B, T, D) layers at the N frames of the (B, T) bool ``select`` -> (K, N, D)."""
    return torch.stack([h[select] for h in layers])


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """2^H of the frame-averaged distribution. probs: (K, N, V) -> (K,)."""
    p = probs.float().sum(1) / max(probs.size(1), 1)  # (K, V); empty -> zeros -> ppl 1
    entropy = -(p * torch.log2(p.clamp(min=1e-12))).sum(-1)
    return torch.exp2(entropy)


class DinoSRLoss(AbsSSLLoss):
    """DinoSR objective with per-layer online codebooks.

    Targets: the teacher's top ``K = num_codebooks`` block outputs
    (``record.teacher_hidden_states[-K:]``), each instance-normalised over the valid frames of an
    utterance (fp32), at the masked frames: ``t_k`` (N_m, D). Codebook k keeps sums
    ``S_k`` (V, D) and counts ``n_k`` (V,) (fp32 buffers, not optimised) with centroids
    ``c_{k,v} = S_{k,v} / n_{k,v}``; target ``y_{k,i} = argmin_v ‖t_{k,i} − c_{k,v}‖²``.
    In training (decay λ < 1) each codebook is updated after assignment, for codewords used in
    the batch (m_v > 0, batch counts and sums all-reduced over ranks):
    ``n_v ← λ n_v + (1 − λ) m_v``, ``S_v ← λ S_v + (1 − λ) M_v``.

    Prediction: K linear heads on the student's final output, at the masked frames M
(``N_m = |M|``) and, with ``α_u > 0``, also at the unmasked valid frames U (their targets are
assigned the same way; only masked frames update the codebooks)::

        L = (1 / N_m) [Σ_{i∈M} + α_u Σ_{i∈U}] (1 / K) Σ_k CE(head_k(x_i), y_{k,i})

    (the reference: α_u = 0; HuBERT's ``pred_nomask_weight`` normalisation).

    Dead codewords (optional, ``codebook_reset_usage`` r > 0; the reference has none): the
    batch share of each codeword is tracked as ``u_v ← β u_v + (1 − β) m_v / Σ m`` (β =
    ``codebook_usage_decay``, u starts at 1/V, updated every batch); at every 100th optimizer
    update (the check costs a host sync), a codeword with ``u_v < r / V`` is re-seeded at a
    random target of the batch (``S_v ← t``, ``n_v ← 1``, ``u_v ← 1/V``), the VQ "codebook
    expiry" remedy. On small data most codewords otherwise stay unused (target perplexity ~25
    of 256 on FSDD). Under DDP rank 0's choice is broadcast.

    Args (DinoSR name, Base value):
        encoder_output_size: D (768).
        num_codebooks: K (``average_top_k_layers`` 8).
        codebook_size: V (``codebook_size`` 256).
        codebook_init_decay / codebook_end_decay: λ at step 0 / at ``codebook_end_decay_step``
            (0.9 / 0.9), linear in between, constant after.
        codebook_end_decay_step: (0).
        normal_init_codebook: init sums ~ N(0, 1/√V) instead of instance-normalised N(0, 1)
            (False).
        instance_norm_target_layer: normalise teacher targets (True).
        collapse_ppl: warn once when the training target perplexity drops below this (2.0).
        pred_nomask_weight: α_u (0.0: masked frames only, as the reference). Unmasked frames
            train the student to encode what it sees, which a frozen-feature probe reads (no
            masks at inference).

        codebook_reset_usage: r (0.0: never re-seed, as the reference).
        codebook_usage_decay: β of the usage tracker (0.99).

    Stats: ``loss``, ``target_ppl``, ``pred_ppl`` (means over codebooks), ``codebook_usage``
    (fraction of codewords hit in the batch), ``codebook_decay``, ``count_m``; with α_u > 0
    also ``loss_u`` (mean CE per unmasked frame) and ``count_u``; with r > 0 also
    ``codebook_resets`` (codewords re-seeded in this step, summed over codebooks).
    Output weight: N_m (masked frames).
    """

    name = "dinosr"
    needs = LossNeeds(mask=True, teacher=True)

    def __init__(
        self,
        encoder_output_size: int,
        num_codebooks: int = 8,
        codebook_size: int = 256,
        codebook_init_decay: float = 0.9,
        codebook_end_decay: float = 0.9,
        codebook_end_decay_step: int = 0,
        normal_init_codebook: bool = False,
        instance_norm_target_layer: bool = True,
        collapse_ppl: float = 2.0,
        pred_nomask_weight: float = 0.0,
        codebook_reset_usage: float = 0.0,
        codebook_usage_decay: float = 0.99,
    ):
        super().__init__()
        if num_codebooks < 1 or codebook_size < 2:
            raise ValueError(f"DinoSRLoss: num_codebooks={num_codebooks} (>= 1) and "
                             f"codebook_size={codebook_size} (>= 2) are required")
        if pred_nomask_weight < 0:
            raise ValueError(f"DinoSRLoss: pred_nomask_weight={pred_nomask_weight} must be >= 0")
        self.pred_nomask_weight = float(pred_nomask_weight)
        if not 0.0 <= codebook_reset_usage < 1.0 or not 0.0 <= codebook_usage_decay < 1.0:
            raise ValueError(f"DinoSRLoss: codebook_reset_usage={codebook_reset_usage} and "
                             f"codebook_usage_decay={codebook_usage_decay} must be in [0, 1)")
        self.codebook_reset_usage = float(codebook_reset_usage)
        self.codebook_usage_decay = float(codebook_usage_decay)
        self._last_resets = 0
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.codebook_init_decay = codebook_init_decay
        self.codebook_end_decay = codebook_end_decay
        self.codebook_end_decay_step = codebook_end_decay_step
        self.instance_norm_target_layer = instance_norm_target_layer
        self.collapse_ppl = collapse_ppl
        self._warned_collapse = False
        self._last_target_ppl: torch.Tensor | None = None
        self._step = 0  # python mirror of the num_updates buffer (no device sync per forward)
        K, V, D = num_codebooks, codebook_size, encoder_output_size
        if normal_init_codebook:
            sums = torch.randn(K, V, D) / V**0.5
        else:  # N(0, 1) of shape (K, D, V), normalised over V, transposed to (K, V, D)
            r = torch.randn(K, D, V)
            sums = F.instance_norm(r).transpose(1, 2).contiguous()
        self.register_buffer("codebook_sums", sums.float())
        self.register_buffer("codebook_counts", torch.ones(K, V))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        if codebook_reset_usage > 0:  # (only then: checkpoints without it stay loadable)
            self.register_buffer("codebook_usage", torch.full((K, V), 1.0 / V))
        self.heads = torch.nn.ModuleList(torch.nn.Linear(D, V) for _ in range(K))

    # -- schedule / state -------------------------------------------------------------------
    def decay_at(self, step: int) -> float:
        """Codebook decay λ after ``step`` optimizer updates."""
        end_step = self.codebook_end_decay_step
        if end_step <= 0 or step >= end_step:
            return float(self.codebook_end_decay)
        frac = step / end_step
        return float(self.codebook_init_decay
                     + (self.codebook_end_decay - self.codebook_init_decay) * frac)

    @property
    def codebook_decay(self) -> float:
        return self.decay_at(self._step)

    def after_optimizer_step(self, step: int) -> None:
        self._step = int(step)
        self.num_updates.fill_(step)
        if step % CHECK_EVERY == 0:  # collapse check: one host sync per 100 updates
            self._check_collapse()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._step = int(self.num_updates)

    def _check_collapse(self) -> None:
        ppl = self._last_target_ppl
        if self._warned_collapse or ppl is None or float(ppl) >= self.collapse_ppl:
            return
        self._warned_collapse = True
        logger.warning(
            "DinoSR target perplexity %.2f < %.1f: the codebooks may have collapsed (reference "
            "Base loss is ~1.4 at 200k updates; ~0.2 means collapse). Check the EMA teacher "
            "decay and the codebook decay.", float(ppl), self.collapse_ppl,
        )

    def _apply(self, fn, recurse=True):  # codebooks stay fp32 whatever the model dtype
        super()._apply(fn, recurse)
        for name in ("codebook_sums", "codebook_counts", "codebook_usage"):
            if name in self._buffers and self._buffers[name].dtype != torch.float32:
                self._buffers[name] = self._buffers[name].float()
        return self

    # -- codebooks --------------------------------------------------------------------------
    def centroids(self) -> torch.Tensor:
        """(K, V, D) fp32 centroids S / n."""
        return self.codebook_sums / self.codebook_counts[..., None]

    def assign(self, targets: torch.Tensor) -> torch.Tensor:
        """(K, N, D) fp32 targets -> (K, N) long index of the nearest centroid."""
        c = self.centroids()
        # ‖t − c‖² = ‖t‖² − 2 t·c + ‖c‖²; ‖t‖² does not change the argmin.
        dist = c.pow(2).sum(-1)[:, None, :] - 2.0 * torch.bmm(targets, c.transpose(1, 2))
        return dist.argmin(-1)

    @torch.no_grad()
    def update_codebooks(self, targets: torch.Tensor, assignment: torch.Tensor,
                         decay: float) -> torch.Tensor:
        """EMA update from (K, N, D) targets and (K, N) codes. Returns (K, V) batch counts m."""
        onehot = F.one_hot(assignment, self.codebook_size).float()  # (K, N, V)
        counts = onehot.sum(1)  # (K, V)
        sums = torch.bmm(onehot.transpose(1, 2), targets)  # (K, V, D)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank calls this even with no masked frames: collectives must match
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        used = counts > 0  # (K, V): unused codewords keep their state
        lam = torch.where(used, torch.full_like(counts, decay), torch.ones_like(counts))
        self.codebook_counts.mul_(lam).add_((1.0 - lam) * counts)
        self.codebook_sums.mul_(lam[..., None]).add_((1.0 - lam)[..., None] * sums)
        if self.codebook_reset_usage > 0:
            self._reset_dead_codewords(targets, counts)
        return counts

    @torch.no_grad()
    def _reset_dead_codewords(self, targets: torch.Tensor, counts: torch.Tensor) -> None:
        """Usage EMA from the (all-reduced) batch counts, then re-seed rarely used codewords
        at random targets of this batch (rank 0's targets under DDP)."""
        K, V = counts.shape
        share = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
        beta = self.codebook_usage_decay
        self.codebook_usage.mul_(beta).add_((1.0 - beta) * share)
        self._last_resets = 0
        if self._step % CHECK_EVERY:  # the check below syncs with the host: not every update
            return
        dead = self.codebook_usage < self.codebook_reset_usage / V  # (K, V), same on all ranks
        n_dead = int(dead.sum())
        self._last_resets = n_dead
        if n_dead == 0:
            return
        n = targets.size(1)
        seeds = torch.zeros(K, V, targets.size(2) + 1, device=targets.device)  # [t, valid]
        if n > 0:
            pick = torch.randint(n, (K, V), device=targets.device)
            seeds[..., :-1] = torch.gather(targets, 1, pick[..., None].expand(-1, -1,
                                                                              targets.size(2)))
            seeds[..., -1] = 1.0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(seeds, src=0)
        reset = dead & (seeds[..., -1] > 0)
        self.codebook_sums[reset] = seeds[..., :-1][reset]
        self.codebook_counts[reset] = 1.0
        self.codebook_usage[reset] = 1.0 / V

    def layer_problems(self, num_layers: int) -> list[str]:
        return [f"num_codebooks={self.num_codebooks}: one codebook per top teacher block, but "
                f"the encoder has {num_layers} blocks (use <= {num_layers})"] \
            if self.num_codebooks > num_layers else []

    def teacher_layers(self, record: SSLForwardRecord) -> list[torch.Tensor]:
        """The teacher's top-K layers, each (B, T, D) fp32 (instance-normalised if enabled)."""
        hs = record.teacher_hidden_states
        if hs is None or len(hs) < self.num_codebooks:
            got = None if hs is None else len(hs)
            raise ValueError(f"DinoSRLoss: needs >= {self.num_codebooks} teacher layers, got "
                             f"{got}; lower loss_conf.num_codebooks or add encoder blocks")
        valid = ~record.padding_mask
        return [masked_instance_norm(h, valid) if self.instance_norm_target_layer else h.float()
                for h in hs[-self.num_codebooks:]]

    def make_targets(self, record: SSLForwardRecord,
                     select: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N, D) fp32 targets from the teacher's top-K layers at the N frames of the (B, T)
        bool ``select`` (default: the masked frames)."""
        return _at(self.teacher_layers(record), record.mask if select is None else select)

    # -- loss -------------------------------------------------------------------------------
    def _unmasked_ce(self, record: SSLForwardRecord, unmasked: torch.Tensor,
                     codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed CE over codebooks at the (B, T) ``unmasked`` frames, targets ``codes``."""
        x = record.hidden_states[-1][unmasked]  # (N_u, D)
        logits = torch.stack([head(x) for head in self.heads]).float()
        ce = F.cross_entropy(logits.reshape(-1, self.codebook_size), codes.reshape(-1),
                             reduction="sum")
        return ce, x.size(0)

    def forward(self, record: SSLForwardRecord) -> LossOutput:
        if record.mask is None:
            raise ValueError("DinoSRLoss needs record.mask; enable the masking util")
        x = record.hidden_states[-1][record.mask]  # (N_m, D)
        n_m = x.size(0)
        decay = self.codebook_decay
        device_type = x.device.type
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            layers = self.teacher_layers(record)  # normalised once for both frame sets
            targets = _at(layers, record.mask)  # (K, N_m, D) fp32
            codes = self.assign(targets)  # (K, N_m)
            if self.pred_nomask_weight > 0:  # same centroids as the masked frames
                unmasked = ~record.padding_mask & ~record.mask
                codes_u = self.assign(_at(layers, unmasked))  # (K, N_u)
            if self.training and decay < 1.0:
                counts = self.update_codebooks(targets, codes, decay)
            else:
                counts = F.one_hot(codes, self.codebook_size).float().sum(1)
        logits = torch.stack([head(x) for head in self.heads]).float()  # (K, N_m, V)
        ce = F.cross_entropy(logits.reshape(-1, self.codebook_size), codes.reshape(-1),
                             reduction="sum")
        extra = {}
        if self.pred_nomask_weight > 0:
            ce_u, n_u = self._unmasked_ce(record, unmasked, codes_u)
            ce = ce + self.pred_nomask_weight * ce_u
            extra = {"loss_u": ce_u.detach() / (self.num_codebooks * max(n_u, 1)),
                     "count_u": torch.tensor(float(n_u), device=x.device)}
        loss = ce / (self.num_codebooks * max(n_m, 1))
        with torch.no_grad():
            target_ppl = perplexity(F.one_hot(codes, self.codebook_size)).mean()
            pred_ppl = perplexity(logits.softmax(-1)).mean()
            stats = {
                "loss": loss.detach(),
                "target_ppl": target_ppl,
                "pred_ppl": pred_ppl,
                "codebook_usage": (counts > 0).float().mean(),
                "codebook_decay": torch.tensor(decay, device=x.device),
                "count_m": torch.tensor(float(n_m), device=x.device),
                **extra,
                **({"codebook_resets": torch.tensor(float(self._last_resets), device=x.device)}
                   if self.codebook_reset_usage > 0 and self.training else {}),
            }
        if self.training and n_m > 0:
            self._last_target_ppl = target_ppl
        return LossOutput(loss=loss, stats=stats, weight=torch.tensor(float(n_m),
                                                                       device=x.device))
