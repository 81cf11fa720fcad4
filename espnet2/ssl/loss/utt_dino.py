"""Utterance-level self-distillation (DINO, Caron et al., 2021, arXiv:2104.14294) for speech.

A frame-level objective (HuBERT, DinoSR) teaches each frame to describe its own neighbourhood;
nothing asks the *utterance* as a whole to stay the same when its speaker changes. This loss
does: the EMA teacher's mean-pooled view of the clean utterance is a soft cluster assignment
that the student must reproduce from its own view, which the model has frequency-warped
(SpecAug ``apply_freq_warp``: a vocal-tract-length change), masked and/or mixed. What survives
the augmentation is what the utterance *says*, which is what a mean-pooled downstream probe
reads. The loss is meant to be added to a frame-level one (the ``loss`` list takes several).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from espnet2.eval.pooling import masked_mean
from espnet2.ssl.loss.abs_loss import AbsSSLLoss, LossNeeds, LossOutput, SSLForwardRecord
from espnet2.ssl.utils.ema import EMATeacher


class DINOHead(torch.nn.Module):
    """DINO projection head: MLP -> L2-normalised bottleneck -> K prototypes (weight-normalised,
    no bias). (B, D) -> (B, K) logits."""

    def __init__(self, dim: int, hidden_dim: int, bottleneck_dim: int, num_prototypes: int):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden_dim), torch.nn.GELU(),
            torch.nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.prototypes = torch.nn.utils.parametrizations.weight_norm(
            torch.nn.Linear(bottleneck_dim, num_prototypes, bias=False))
        with torch.no_grad():  # DINO: the prototypes' magnitudes are fixed at 1
            self.prototypes.parametrizations.weight.original0.fill_(1.0)
        self.prototypes.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prototypes(F.normalize(self.mlp(x), dim=-1))


class UtteranceDINOLoss(AbsSSLLoss):
    """Utterance-level DINO between the EMA teacher (clean input) and the student.

    With ``s_b`` / ``t_b`` the student's / teacher's block ``layer`` outputs mean-pooled over the
    valid frames of utterance b (the student's include its masked frames), ``g`` the student head
    and ``ḡ`` its EMA copy (decay ``head_decay``), the centre ``c`` (K,) and B utterances::

        p_b = softmax((ḡ(t_b) − c) / τ_t)          (teacher: centred and sharpened, no gradient)
        L   = −(1/B) Σ_b Σ_k p_{b,k} log softmax(g(s_b) / τ_s)_k
        c  ← m c + (1 − m) mean_b ḡ(t_b)          (after each forward in training; all ranks)
        ḡ  ← λ ḡ + (1 − λ) g                       (after each optimizer update)

    Centring keeps one prototype from taking every utterance, sharpening keeps the targets
    from going uniform (DINO section 3); the teacher encoder is the model's EMA util.

    Args (DINO name, ViT value):
        encoder_output_size: D.
        num_prototypes: K (``out_dim`` 65536; an utterance corpus needs far fewer: 256).
        hidden_dim: head MLP width (2048).
        bottleneck_dim: (256).
        student_temp: τ_s (0.1).
        teacher_temp: τ_t (0.04).
        center_momentum: m (0.9).
        head_decay: λ of the teacher head (the teacher's momentum, 0.996).
        layer: the block pooled by both (-1: the top).

    Input: ``record.hidden_states``, ``record.teacher_hidden_states`` [(B, T, D)],
    ``record.lengths`` (B,). Output weight: B (utterances); the model adds this loss's
    per-utterance mean to the other losses' per-frame means. Stats: ``loss``, ``teacher_ppl``
    (2^entropy of the batch-averaged teacher distribution: near 1 = collapse), ``agree``
    (share of utterances whose student and teacher argmax prototypes agree).
    """

    name = "utt_dino"
    needs = LossNeeds(mask=False, teacher=True)

    def __init__(
        self,
        encoder_output_size: int,
        num_prototypes: int = 256,
        hidden_dim: int = 256,
        bottleneck_dim: int = 64,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        center_momentum: float = 0.9,
        head_decay: float = 0.996,
        layer: int = -1,
    ):
        super().__init__()
        problems = []
        if num_prototypes < 2:
            problems.append(f"num_prototypes={num_prototypes} (need >= 2)")
        if min(student_temp, teacher_temp) <= 0:
            problems.append(f"student_temp={student_temp}, teacher_temp={teacher_temp} (> 0)")
        for key, v in (("center_momentum", center_momentum), ("head_decay", head_decay)):
            if not 0.0 <= v < 1.0:
                problems.append(f"{key}={v} (must be in [0, 1))")
        if problems:
            raise ValueError("UtteranceDINOLoss: " + "; ".join(problems))
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.center_momentum = float(center_momentum)
        self.layer = int(layer)
        self.head = DINOHead(encoder_output_size, hidden_dim, bottleneck_dim, num_prototypes)
        # ḡ: the model's EMA mechanism with a constant decay, copied from g at the first
        # training forward (after any --init), kept on resume
        self.teacher_head = EMATeacher(self.head, ema_decay=head_decay, ema_end_decay=head_decay,
                                       ema_anneal_end_step=0, skip_keys=())
        self.register_buffer("center", torch.zeros(num_prototypes))

    def layer_problems(self, num_layers: int) -> list[str]:
        if -num_layers <= self.layer < num_layers:
            return []
        return [f"utt_dino layer={self.layer} but the encoder has {num_layers} blocks "
                f"(use -{num_layers}..{num_layers - 1})"]

    def forward(self, record: SSLForwardRecord) -> LossOutput:
        if record.teacher_hidden_states is None:
            raise ValueError("UtteranceDINOLoss needs the EMA teacher's hidden states")
        if self.training and not self.teacher_head.is_synced():
            self.teacher_head.sync_(self.head)
        lens = record.lengths
        s = masked_mean(record.hidden_states[self.layer].float(), lens)  # (B, D)
        with torch.no_grad():
            t = masked_mean(record.teacher_hidden_states[self.layer].float(), lens)
            z_t = self.teacher_head(t)
            p_t = torch.softmax((z_t - self.center) / self.teacher_temp, dim=-1)  # (B, K)
        logp_s = torch.log_softmax(self.head(s).float() / self.student_temp, dim=-1)
        loss = -(p_t * logp_s).sum(-1).mean()
        if self.training:
            self._update_center(z_t)
        with torch.no_grad():
            p_bar = p_t.mean(0)
            ppl = torch.exp2(-(p_bar * torch.log2(p_bar.clamp(min=1e-12))).sum())
            agree = (logp_s.argmax(-1) == p_t.argmax(-1)).float().mean()
        stats = {"loss": loss.detach(), "teacher_ppl": ppl, "agree": agree}
        return LossOutput(loss=loss, stats=stats, weight=torch.tensor(float(s.size(0))))

    @torch.no_grad()
    def _update_center(self, z_t: torch.Tensor) -> None:
        batch = torch.stack([z_t.sum(0), z_t.new_full((z_t.size(1),), float(z_t.size(0)))])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch)  # sum of logits and of utterances, all ranks
        mean = batch[0] / batch[1].clamp(min=1.0)
        self.center.mul_(self.center_momentum).add_(mean, alpha=1.0 - self.center_momentum)

    def after_optimizer_step(self, step: int) -> None:
        self.teacher_head.step(self.head, step)  # ḡ ← λ ḡ + (1 − λ) g
