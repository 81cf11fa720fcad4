"""The SSL model: shared feature pipeline, optional EMA teacher, masking, encoder, losses.

Pipeline of :meth:`ESPnetSSLModel.forward`::

    speech (B, N) ─ [mix, training only] ─ frontend ─ [specaug, training only] ─ [normalize]
      ─ [preencoder] ─ x (B, T, D)
    clean speech ─ frontend ─ [normalize] ─ [preencoder] ─(no grad)─ EMA teacher (if a loss
                                                          needs it) ──▶ teacher_hidden_states
      x ─ masking (if a loss needs it) ─ encoder(return_all_hs) ──▶ hidden_states
      SSLForwardRecord ─▶ every loss ─▶ (Σ_i w_i loss_i, stats, weight)

``weight`` is the number of masked frames in the batch (all valid frames when no loss masks):
each loss returns a per-frame mean over (about) these frames, and the trainer rescales every
rank's loss by ``weight * world_size / Σ_ranks weight`` so the update is the gradient of the
per-frame mean over all ranks. Masking also runs in eval mode (ESPnet behaviour, so the
validation loss measures the training objective); the Masking util draws eval masks from a
fixed seed, so validation losses are comparable between epochs. The teacher never sees
SpecAug: with frequency warping on, the student learns to predict the clean input's targets
from a speaker-perturbed view (as label-based losses do with labels made from clean audio).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.ssl.loss.abs_loss import AbsSSLLoss, SSLForwardRecord
from espnet2.ssl.utils.ema import EMATeacher
from espnet2.ssl.utils.mask import Masking

logger = logging.getLogger(__name__)

LossSpec = tuple[str, AbsSSLLoss, float] | tuple[AbsSSLLoss, float] | AbsSSLLoss


def _loss_name(loss: AbsSSLLoss) -> str:
    name = getattr(loss, "name", None) or type(loss).__name__.lower().removesuffix("loss")
    return str(name)


def align_labels(
    text: torch.Tensor, text_lengths: torch.Tensor, lengths: torch.Tensor, total: int
) -> torch.Tensor:
    """Trim / pad labels to the encoder frames.

    Args:
        text: (B, L) long labels (-1 pad). text_lengths: (B,). lengths: (B,) valid frames.
        total: T, the padded frame count.

    Returns:
        (B, T) long; -1 beyond ``min(text_lengths, lengths)`` (no label, or padding).
    """
    labels = text.new_full((text.size(0), total), -1)
    n = min(text.size(1), total)
    labels[:, :n] = text[:, :n]
    keep = torch.arange(total, device=text.device)[None, :] < torch.minimum(
        text_lengths, lengths
    )[:, None]
    return labels.masked_fill(~keep, -1)


class ESPnetSSLModel(torch.nn.Module):
    """Self-supervised model with pluggable losses (ESPnet ``model: espnet``).

    Args:
        frontend: waveform -> features (None: ``speech`` already is (B, T, D) features).
        specaug, normalize, preencoder: optional feature modules (pre-encoder output dim must
            equal the encoder input dim and the mask embedding dim).
        encoder: frame-preserving encoder with ``return_all_hs``.
        losses: ``(name, loss, weight)`` triples, ``(loss, weight)`` pairs or bare losses
            (name = ``loss.name``, weight 1.0). Stats are prefixed ``{name}_``.
        masker: the Masking util (required when a loss needs masking).
        ema: the EMA teacher over ``encoder`` (required when a loss needs a teacher).
        token_list: kept for the packed config; labels are already integer ids.
        label_tolerance: warn (once) when label and frame counts differ by more than this.
        feature_grad_mult: scale of the gradient reaching the frontend (fairseq
            ``feature_grad_mult``: HuBERT Base 0.1, DinoSR 1.0; ESPnet ssl1 1.0). The forward
            value is unchanged; 0 freezes the frontend.
        mixer: waveform augmentation of the student's input in training (``(speech,
            lengths) -> speech``, e.g. :class:`espnet2.ssl.utils.mix.UtteranceMixing`); the
            labels and the EMA teacher keep describing the clean input.
    """

    def __init__(
        self,
        frontend: AbsFrontend | None,
        specaug: AbsSpecAug | None,
        normalize: AbsNormalize | None,
        preencoder: AbsPreEncoder | None,
        encoder: AbsEncoder,
        losses: Sequence[LossSpec],
        masker: Masking | None = None,
        ema: EMATeacher | None = None,
        token_list: Sequence[str] | None = None,
        label_tolerance: int = 2,
        feature_grad_mult: float = 1.0,
        mixer: torch.nn.Module | None = None,
    ):
        super().__init__()
        self.frontend = frontend
        self.specaug = specaug
        self.normalize = normalize
        self.preencoder = preencoder
        self.encoder = encoder
        self.masker = masker
        self.ema = ema
        self.token_list = list(token_list) if token_list is not None else None
        self.label_tolerance = label_tolerance
        self.feature_grad_mult = feature_grad_mult
        self.mixer = mixer
        self._warned_labels = False
        self.losses = torch.nn.ModuleDict()
        self.loss_weights: dict[str, float] = {}
        for spec in losses:
            name, loss, weight = self._parse_loss(spec)
            if name in self.losses:
                raise ValueError(f"ESPnetSSLModel: two losses named {name!r}; give each "
                                 "loss a distinct name")
            self.losses[name] = loss
            self.loss_weights[name] = float(weight)
        if not self.losses:
            raise ValueError("ESPnetSSLModel: no loss configured; add one under `loss:`")
        self.needs_mask = any(loss.needs.mask for loss in self.losses.values())
        self.needs_teacher = any(loss.needs.teacher for loss in self.losses.values())
        self.needs_labels = any(loss.needs.labels for loss in self.losses.values())
        problems = []
        if self.needs_mask and masker is None:
            problems.append("a loss needs masking but no Masking util was given (util: mask)")
        if self.needs_teacher and ema is None:
            problems.append("a loss needs an EMA teacher but none was given (util: ema)")
        blocks = encoder.num_layers()
        problems += [f"loss '{name}': {p} (fix its conf, or the encoder's num_blocks)"
                     for name, loss in self.losses.items() for p in loss.layer_problems(blocks)]
        if problems:
            raise ValueError("ESPnetSSLModel: " + "; ".join(problems))

    @staticmethod
    def _parse_loss(spec: LossSpec) -> tuple[str, AbsSSLLoss, float]:
        if isinstance(spec, AbsSSLLoss):
            return _loss_name(spec), spec, 1.0
        if len(spec) == 2:
            return _loss_name(spec[0]), spec[0], spec[1]
        return spec[0], spec[1], spec[2]

    # -- feature pipeline -------------------------------------------------------------------
    def encode_features(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveform -> (B, T, D) unmasked pre-encoder output and (B,) frame counts.

        SpecAug applies in training mode only.
        """
        feats, lengths = self._frontend(speech, speech_lengths)
        return self._post_frontend(feats, lengths, augment=True)

    def _frontend(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        speech = speech[:, : int(speech_lengths.max())]  # drop batch-wide padding
        if self.frontend is None:
            return speech, speech_lengths
        x, lengths = self.frontend(speech, speech_lengths)
        if self.feature_grad_mult != 1.0 and torch.is_grad_enabled():
            # same value, gradient scaled by g: g·x + (1 − g)·stop_grad(x)
            g = self.feature_grad_mult
            x = x * g + x.detach() * (1.0 - g)
        return x, lengths

    def _post_frontend(
        self, x: torch.Tensor, lengths: torch.Tensor, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if augment and self.specaug is not None and self.training:
            x, lengths = self.specaug(x, lengths)
        if self.normalize is not None:
            x, lengths = self.normalize(x, lengths)
        if self.preencoder is not None:
            x, lengths = self.preencoder(x, lengths)
        return x, lengths

    def _encoder_states(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        (_, hidden_states), _, _ = self.encoder(x, lengths, return_all_hs=True)
        if hidden_states[-1].shape[:2] != x.shape[:2]:
            raise RuntimeError(
                f"ESPnetSSLModel: encoder changed the frame count {tuple(x.shape[:2])} -> "
                f"{tuple(hidden_states[-1].shape[:2])}; SSL needs a frame-preserving encoder "
                "(input_layer: wav2vec, linear or null)"
            )
        return list(hidden_states)

    def _labels(self, text, text_lengths, lengths, total) -> torch.Tensor:
        if text is None or text_lengths is None:
            raise ValueError("ESPnetSSLModel: a loss needs frame labels but the batch has no "
                             "`text`; add the label file to the data directory (stage 5)")
        if not self._warned_labels:
            diff = (text_lengths.to(lengths.device) - lengths).abs()
            if bool((diff > self.label_tolerance).any()):
                self._warned_labels = True
                logger.warning(
                    "label/frame count mismatch up to %d frames (tolerance %d): labels are not "
                    "frame-aligned with this frontend; check the label rate and frame geometry",
                    int(diff.max()), self.label_tolerance,
                )
        return align_labels(text.long(), text_lengths.to(lengths.device), lengths, total)

    # -- training ---------------------------------------------------------------------------
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """speech (B, N), speech_lengths (B,), text (B, L) long (-1 pad), text_lengths (B,).

        Returns ``(loss, stats, weight)``: loss = Σ_i w_i loss_i (scalar), detached stats
        (``loss``, ``{name}_{key}`` per loss, ``ema_decay``), weight = masked frame count.
        """
        if speech.size(0) != speech_lengths.size(0):
            raise ValueError(f"ESPnetSSLModel: speech batch {tuple(speech.shape)} and "
                             f"speech_lengths {tuple(speech_lengths.shape)} disagree")
        mixed = self.mixer(speech, speech_lengths) if self.mixer is not None and self.training \
            else speech
        feats, feat_lengths = self._frontend(mixed, speech_lengths)
        x, lengths = self._post_frontend(feats, feat_lengths, augment=True)
        B, T, _ = x.shape
        padding_mask = torch.arange(T, device=x.device)[None, :] >= lengths[:, None]
        teacher_states = None
        if self.needs_teacher:
            if not self.ema.is_synced():
                self.ema.sync_(self.encoder)
            # the teacher sees the unmasked, un-augmented input; its output is a target,
            # never a graph
            x_teacher = x
            if mixed is not speech:
                with torch.no_grad():
                    clean, _ = self._frontend(speech, speech_lengths)
                    x_teacher, _ = self._post_frontend(clean, feat_lengths, augment=False)
            elif self.specaug is not None and self.training:
                with torch.no_grad():
                    x_teacher, _ = self._post_frontend(feats, feat_lengths, augment=False)
            (_, teacher_states), _, _ = self.ema(x_teacher.detach(), lengths,
                                                 return_all_hs=True)
            teacher_states = [h.detach() for h in teacher_states]
        mask = None
        x_in = x
        if self.needs_mask:
            x_in, mask = self.masker(x, padding_mask)
        record = SSLForwardRecord(
            hidden_states=self._encoder_states(x_in, lengths),
            lengths=lengths,
            padding_mask=padding_mask,
            mask=mask,
            labels=self._labels(text, text_lengths, lengths, T) if self.needs_labels else None,
            teacher_hidden_states=teacher_states,
            features=x,
        )
        total = x.new_zeros((), dtype=torch.float32)
        stats: dict[str, torch.Tensor] = {}
        for name, loss in self.losses.items():
            out = loss(record)
            total = total + self.loss_weights[name] * out.loss
            stats.update({f"{name}_{k}": v.detach() for k, v in out.stats.items()})
        stats["loss"] = total.detach()
        if self.ema is not None:
            stats["ema_decay"] = torch.tensor(self.ema.last_decay, device=x.device)
        weight = (mask if mask is not None else ~padding_mask).sum().float()
        return total, stats, weight

    def after_optimizer_step(self, step: int) -> None:
        """Call once per optimizer step (``step`` counts updates from 1): EMA, loss schedules.

        Call it on the unwrapped model (``ddp_model.module``), after ``optimizer.step()``, also
        under gradient accumulation (once per update, not per forward). Build the optimizer
        from ``[p for p in model.parameters() if p.requires_grad]``: the EMA teacher's
        parameters are in the state dict but must not be optimised (or weight-decayed).
        """
        if self.ema is not None:
            self.ema.step(self.encoder, step)
        for loss in self.losses.values():
            loss.after_optimizer_step(step)

    # -- downstream -------------------------------------------------------------------------
    def extract_features(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        layers: Sequence[int] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Unmasked student features for downstream use.

        Returns a list of (B, T, D) block outputs (all blocks, or ``layers`` indices, negative
        from the end; the last block output is the encoder's final, normalised output) and the
        (B,) frame counts. Call under ``torch.no_grad()`` and ``model.eval()`` for inference.
        """
        x, lengths = self.encode_features(speech, speech_lengths)
        hidden_states = self._encoder_states(x, lengths)
        if layers is not None:
            hidden_states = [hidden_states[i] for i in layers]
        return hidden_states, lengths
