"""HuBERT masked prediction of frame-level pseudo-labels (Hsu et al., 2021, arXiv:2106.07447)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from espnet2.ssl.loss.abs_loss import AbsSSLLoss, LossNeeds, LossOutput, SSLForwardRecord

logger = logging.getLogger(__name__)


class HuBERTLoss(AbsSSLLoss):
    """HuBERT loss on one or more encoder layers.

    For each selected layer ℓ with weight w_ℓ, hidden states h (B, T, D) are projected
    ``p = P_ℓ h`` (D -> ``final_dim``) and scored against the ``num_classes`` labels:

    * ``loss_type="ce"`` (ESPnet ssl1 default, FastHuBERT style): ``z = (E_ℓ p + b_ℓ) / τ`` with a
      Linear ``E_ℓ`` (final_dim -> num_classes);
    * ``loss_type="cosine"`` (original HuBERT / fairseq / torchaudio): ``z_k = cos(p, e_k) / τ``
      with a learned label-embedding table ``e`` (num_classes, final_dim), uniform init.

    With M the masked frames carrying a label (label != -1), U the unmasked, non-padding
    labelled frames and ``N_m = |M|``::

        L = Σ_ℓ w_ℓ · [α_m Σ_{i∈M} CE(z_i, y_i) + α_u Σ_{i∈U} CE(z_i, y_i)] / N_m  +  λ · mean(f²)

    which is fairseq's summed objective divided by its ``sample_size`` N_m (per-frame mean).
    ``f`` is ``record.features`` (the unmasked pre-encoder output, valid frames only); fairseq
    penalises the CNN output instead (same idea, different tensor).

    Args (fairseq name, Base value):
        encoder_output_size: D (768).
        num_classes: number of k-means clusters (100 for iteration 1, 500 for iteration 2).
            fairseq's dictionary adds 4 special symbols, so its table has num_classes + 4 rows.
        final_dim: projection dimension (``final_dim`` 256).
        loss_type: "ce" (default) or "cosine".
        layers: encoder layers (indices into ``hidden_states``, negative from the end) ([-1]).
        loss_weights: one weight per layer ([1.0]).
        logit_temp: τ (``logit_temp`` 0.1).
        pred_masked_weight: α_m (``pred_masked_weight`` 1.0).
        pred_nomask_weight: α_u (``pred_nomask_weight`` 0.0).
        feature_pen_weight: λ (fairseq ``loss_weights`` [10] with the feature penalty; 0 here).
        skip_nomask: do not build a graph for unmasked frames (needs α_u = 0); their accuracy
            is still reported (computed without gradient).

    Input: ``record.hidden_states`` [(B, T, D)], ``record.mask`` (B, T), ``record.labels``
    (B, T) long with -1 = ignore, ``record.padding_mask`` (B, T).
    Output weight: N_m. Stats per layer (suffix ``_{layer}`` when several layers): ``loss``,
    ``acc_m`` (masked accuracy), ``acc_u`` (unmasked non-padding accuracy), ``count_m``,
    ``count_u``; accuracies are 0 when their count is 0.
    """

    name = "hubert"
    needs = LossNeeds(labels=True, mask=True)

    def __init__(
        self,
        encoder_output_size: int,
        num_classes: int,
        final_dim: int,
        loss_type: str = "ce",
        layers: Sequence[int] = (-1,),
        loss_weights: Sequence[float] = (1.0,),
        logit_temp: float = 0.1,
        pred_masked_weight: float = 1.0,
        pred_nomask_weight: float = 0.0,
        feature_pen_weight: float = 0.0,
        skip_nomask: bool = True,
    ):
        super().__init__()
        problems = []
        if loss_type not in ("ce", "cross_entropy", "cosine"):
            problems.append(f"loss_type={loss_type!r} (choose 'ce' or 'cosine')")
        if len(layers) != len(loss_weights) or len(layers) == 0:
            problems.append(f"layers={list(layers)} and loss_weights={list(loss_weights)} "
                            "(give one weight per layer, at least one layer)")
        if skip_nomask and pred_nomask_weight != 0.0:
            problems.append(f"skip_nomask=True with pred_nomask_weight={pred_nomask_weight} "
                            "(set skip_nomask: false to train on unmasked frames)")
        if logit_temp <= 0:
            problems.append(f"logit_temp={logit_temp} (must be > 0)")
        if problems:
            raise ValueError("HuBERTLoss: invalid options: " + "; ".join(problems))
        self.loss_type = "ce" if loss_type == "cross_entropy" else loss_type
        self.layers = [int(x) for x in layers]
        self.loss_weights = [float(w) for w in loss_weights]
        self.num_classes = num_classes
        self.logit_temp = logit_temp
        self.pred_masked_weight = pred_masked_weight
        self.pred_nomask_weight = pred_nomask_weight
        self.feature_pen_weight = feature_pen_weight
        self.skip_nomask = skip_nomask
        self.final_proj = torch.nn.ModuleList(
            torch.nn.Linear(encoder_output_size, final_dim) for _ in self.layers
        )
        if self.loss_type == "ce":
            self.label_embeddings = torch.nn.ModuleList(
                torch.nn.Linear(final_dim, num_classes) for _ in self.layers
            )
        else:
            self.label_embeddings = torch.nn.ParameterList(
                torch.nn.Parameter(torch.empty(num_classes, final_dim).uniform_())
                for _ in self.layers
            )

    def layer_problems(self, num_layers: int) -> list[str]:
        bad = [x for x in self.layers if not -num_layers <= x < num_layers]
        return [f"layers={self.layers}: {bad} out of range for an encoder with {num_layers} "
                f"blocks (valid: 0..{num_layers - 1}, or -{num_layers}..-1 from the end)"] \
            if bad else []

    def logits(self, index: int, proj: torch.Tensor) -> torch.Tensor:
        """(N, final_dim) projected frames -> (N, num_classes) logits of layer slot ``index``."""
        if self.loss_type == "ce":
            return self.label_embeddings[index](proj) / self.logit_temp
        emb = F.normalize(self.label_embeddings[index].float(), dim=-1, eps=1e-8)
        cos = F.normalize(proj.float(), dim=-1, eps=1e-8) @ emb.t()  # (N, K), no (N, K, d) temp
        return cos / self.logit_temp

    def _layer(
        self, index: int, h: torch.Tensor, sel_m: torch.Tensor, sel_u: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Summed weighted CE of one layer and its stats."""
        proj = self.final_proj[index](h)  # (B, T, final_dim)
        z_m = self.logits(index, proj[sel_m]).float()  # (N_m, K)
        y_m = labels[sel_m]
        ce_sum = self.pred_masked_weight * F.cross_entropy(z_m, y_m, reduction="sum")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.skip_nomask):
            z_u = self.logits(index, proj[sel_u]).float()  # (N_u, K)
            y_u = labels[sel_u]
            if not self.skip_nomask:
                ce_sum = ce_sum + self.pred_nomask_weight * F.cross_entropy(
                    z_u, y_u, reduction="sum"
                )
        with torch.no_grad():
            n_m, n_u = y_m.numel(), y_u.numel()
            correct_m = (z_m.argmax(-1) == y_m).sum().float()
            correct_u = (z_u.argmax(-1) == y_u).sum().float()
            stats = {
                "acc_m": correct_m / max(n_m, 1),
                "acc_u": correct_u / max(n_u, 1),
                "count_m": torch.tensor(float(n_m)),
                "count_u": torch.tensor(float(n_u)),
            }
        return ce_sum, stats

    def forward(self, record: SSLForwardRecord) -> LossOutput:
        if record.mask is None or record.labels is None:
            raise ValueError("HuBERTLoss needs record.mask and record.labels; the model must "
                             "run masking and pass frame-aligned labels (text)")
        labels = record.labels
        labelled = (labels >= 0) & ~record.padding_mask
        sel_m = record.mask & labelled
        sel_u = ~record.mask & labelled
        n_m = sel_m.sum()
        denom = n_m.clamp(min=1).float()
        total = record.hidden_states[-1].new_zeros((), dtype=torch.float32)
        stats: dict[str, torch.Tensor] = {}
        num_layers = len(record.hidden_states)
        for i, (layer, w) in enumerate(zip(self.layers, self.loss_weights)):
            resolved = layer if layer >= 0 else num_layers + layer
            if not 0 <= resolved < num_layers:
                raise IndexError(f"HuBERTLoss: layer {layer} out of range for an encoder with "
                                 f"{num_layers} blocks; fix loss_conf.layers")
            ce_sum, layer_stats = self._layer(i, record.hidden_states[resolved], sel_m, sel_u,
                                              labels)
            layer_loss = ce_sum / denom
            total = total + w * layer_loss
            layer_stats["loss"] = layer_loss.detach()
            suffix = f"_{resolved}" if len(self.layers) > 1 else ""
            stats.update({k + suffix: v.to(total.device) for k, v in layer_stats.items()})
        if self.feature_pen_weight > 0 and record.features is not None:
            valid = (~record.padding_mask)[..., None].to(record.features.dtype)
            count = valid.sum().clamp(min=1) * record.features.size(-1)
            pen = (record.features.float().pow(2) * valid).sum() / count
            total = total + self.feature_pen_weight * pen
            stats["features_pen"] = pen.detach()
        return LossOutput(loss=total, stats=stats, weight=n_m.detach().float())
