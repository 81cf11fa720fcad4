"""data2vec: regression of contextualised teacher targets (Baevski et al., 2022, arXiv:2202.03555).

Port decision (as DinoSR here): the targets are built from the teacher's block outputs as
returned by ``return_all_hs``; the reference averages fairseq's ``layer_result`` (the FFN
output before the final residual add and LayerNorm). Instance normalisation of each layer
removes most of the scale difference.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from espnet2.ssl.loss.abs_loss import AbsSSLLoss, LossNeeds, LossOutput, SSLForwardRecord
from espnet2.ssl.loss.dinosr import CHECK_EVERY, masked_instance_norm

logger = logging.getLogger(__name__)


class Data2VecLoss(AbsSSLLoss):
    """data2vec (audio) objective: predict the average of the teacher's top-K layers.

    Targets: the EMA teacher sees the unmasked input; its top ``K = average_top_k_layers`` block
    outputs ``a^l`` (B, T, D) are each instance-normalised over the valid frames of an
    utterance (``IN``, fp32; on by default) and averaged::

        y_t = (1 / K) Σ_{l = L-K+1}^{L} IN(a^l)_t

    Prediction: a linear head ``ŷ_t = W h_t + b`` on the student's final output h, at the
    masked frames M (``N_m = |M|``) and, with ``α_u > 0``, also at the unmasked valid frames U::

        ℓ(ŷ, y) = Σ_d ρ_β(ŷ_d − y_d) · s        ρ_0(e) = e²;  ρ_β(e) = e²/(2β) if |e| < β
                                                              else |e| − β/2  (smooth L1)
        L = (1 / N_m) [Σ_{i∈M} ℓ(ŷ_i, y_i) + α_u Σ_{i∈U} ℓ(ŷ_i, y_i)]

    with ``s = loss_scale`` or, when None, ``1 / √D`` (the reference's default).

    Args (data2vec name, Base value):
        encoder_output_size: D (768).
        average_top_k_layers: K (8).
        instance_norm_target_layer: normalise each teacher layer (True).
        loss_beta: β (0: squared error).
        loss_scale: s (None: 1 / √D).
        pred_nomask_weight: α_u (0.0: masked frames only, as the reference). A frozen-feature
            probe reads unmasked audio, which only the unmasked term trains on.
        min_target_var / min_pred_var: collapse thresholds (``min_target_var`` 0.1,
            ``min_pred_var`` 0.01): from update ``collapse_check_after`` (5000) on, a check
            every 100 updates warns once when the last training batch's variance is below
            them (the reference aborts; a warning keeps the run and its checkpoints).

    Stats: ``loss``, ``target_var`` (variance of the targets over the masked frames and the
    dimensions: near 0 means the teacher collapsed to a constant), ``pred_var``, ``count_m``;
    with α_u > 0 also ``loss_u`` (mean ℓ per unmasked frame) and ``count_u``.
    Output weight: N_m.
    """

    name = "data2vec"
    needs = LossNeeds(mask=True, teacher=True)

    def __init__(
        self,
        encoder_output_size: int,
        average_top_k_layers: int = 8,
        instance_norm_target_layer: bool = True,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        pred_nomask_weight: float = 0.0,
        min_target_var: float = 0.1,
        min_pred_var: float = 0.01,
        collapse_check_after: int = 5000,
    ):
        super().__init__()
        problems = []
        if average_top_k_layers < 1:
            problems.append(f"average_top_k_layers={average_top_k_layers} (must be >= 1)")
        if loss_beta < 0:
            problems.append(f"loss_beta={loss_beta} (must be >= 0; 0 = squared error)")
        if loss_scale is not None and loss_scale <= 0:
            problems.append(f"loss_scale={loss_scale} (must be > 0, or null for 1/sqrt(D))")
        if pred_nomask_weight < 0:
            problems.append(f"pred_nomask_weight={pred_nomask_weight} (must be >= 0)")
        if problems:
            raise ValueError("Data2VecLoss: invalid options: " + "; ".join(problems))
        self.average_top_k_layers = average_top_k_layers
        self.instance_norm_target_layer = instance_norm_target_layer
        self.loss_beta = loss_beta
        self.scale = loss_scale if loss_scale is not None else encoder_output_size ** -0.5
        self.pred_nomask_weight = pred_nomask_weight
        self.head = torch.nn.Linear(encoder_output_size, encoder_output_size)
        self.min_target_var = min_target_var
        self.min_pred_var = min_pred_var
        self.collapse_check_after = collapse_check_after
        self._last_vars: tuple[torch.Tensor, torch.Tensor] | None = None
        self._warned_collapse = False

    def after_optimizer_step(self, step: int) -> None:
        if step % CHECK_EVERY == 0 and step >= self.collapse_check_after:
            self._check_collapse(step)  # one host sync per 100 updates

    def _check_collapse(self, step: int) -> None:
        if self._warned_collapse or self._last_vars is None:
            return
        t, p = (float(v) for v in self._last_vars)
        if t >= self.min_target_var and p >= self.min_pred_var:
            return
        self._warned_collapse = True
        logger.warning(
            "data2vec at update %d: target variance %.3g (min %.3g), prediction variance %.3g "
            "(min %.3g): the teacher or the student may have collapsed to a constant. Check "
            "the EMA teacher (ema_decay schedule) and the learning rate; the data2vec "
            "reference aborts here.", step, t, self.min_target_var, p, self.min_pred_var)

    def layer_problems(self, num_layers: int) -> list[str]:
        k = self.average_top_k_layers
        return [f"average_top_k_layers={k} but the encoder has {num_layers} blocks "
                f"(use <= {num_layers})"] if k > num_layers else []

    def targets(self, record: SSLForwardRecord) -> torch.Tensor:
        """(B, T, D) fp32 targets: the mean of the teacher's top-K (normalised) layers."""
        hs = record.teacher_hidden_states
        k = self.average_top_k_layers
        if hs is None or len(hs) < k:
            got = None if hs is None else len(hs)
            raise ValueError(f"Data2VecLoss: needs >= {k} teacher layers, got {got}; lower "
                             "loss_conf.average_top_k_layers or add encoder blocks")
        valid = ~record.padding_mask
        layers = [masked_instance_norm(h, valid) if self.instance_norm_target_layer
                  else h.float() for h in hs[-k:]]
        return torch.stack(layers).mean(0)

    def _summed(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Σ over frames and dimensions of ρ_β(pred − target), times s."""
        if self.loss_beta == 0:
            err = F.mse_loss(pred, target, reduction="sum")
        else:
            err = F.smooth_l1_loss(pred, target, reduction="sum", beta=self.loss_beta)
        return err * self.scale

    def forward(self, record: SSLForwardRecord) -> LossOutput:
        if record.mask is None:
            raise ValueError("Data2VecLoss needs record.mask; enable the masking util")
        h = record.hidden_states[-1]
        with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
            y = self.targets(record)
        y_m = y[record.mask]  # (N_m, D)
        pred_m = self.head(h[record.mask]).float()
        n_m = y_m.size(0)
        total = self._summed(pred_m, y_m)
        extra = {}
        if self.pred_nomask_weight > 0:
            unmasked = ~record.padding_mask & ~record.mask
            n_u = int(unmasked.sum())
            sum_u = self._summed(self.head(h[unmasked]).float(), y[unmasked])
            total = total + self.pred_nomask_weight * sum_u
            extra = {"loss_u": sum_u.detach() / max(n_u, 1),
                     "count_u": torch.tensor(float(n_u), device=h.device)}
        loss = total / max(n_m, 1)
        with torch.no_grad():
            stats = {
                "loss": loss.detach(),
                "target_var": y_m.var() if n_m > 1 else y_m.new_zeros(()),
                "pred_var": pred_m.var() if n_m > 1 else pred_m.new_zeros(()),
                "count_m": torch.tensor(float(n_m), device=h.device),
                **extra,
            }
        if self.training and n_m > 1:
            self._last_vars = (stats["target_var"], stats["pred_var"])
        return LossOutput(loss=loss, stats=stats,
                          weight=torch.tensor(float(n_m), device=h.device))
