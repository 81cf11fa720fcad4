import logging

import pytest
import torch

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.ssl.espnet_model import ESPnetSSLModel, align_labels
from espnet2.ssl.loss.dinosr import DinoSRLoss
from espnet2.ssl.loss.hubert import HuBERTLoss
from espnet2.ssl.utils.ema import EMATeacher
from espnet2.ssl.utils.mask import Masking
from espnet2.testing.tiny import TinyEncoder, TinyFrontend, TinyPreEncoder, tiny_batch, tiny_model

LOSS_SETS = [("hubert",), ("dinosr",), ("hubert", "dinosr")]
SMALL_CNN = [(16, 10, 5), (16, 3, 2)]  # receptive field 20, stride 10


def real_model(losses=("hubert",), dim=32, mask_conf=None, hubert_conf=None):
    """Small model from the real building blocks."""
    encoder = TransformerEncoder(dim, dim, attention_heads=2, linear_units=64, num_blocks=2,
                                 dropout_rate=0.1, attention_dropout_rate=0.1,
                                 input_layer="wav2vec", normalize_before=False,
                                 pos_enc_layer_type="conv")
    built = []
    if "hubert" in losses:
        built.append(("hubert", HuBERTLoss(dim, 8, final_dim=8, **(hubert_conf or {})), 1.0))
    if "dinosr" in losses:
        built.append(("dinosr", DinoSRLoss(dim, num_codebooks=2, codebook_size=4), 1.0))
    return ESPnetSSLModel(
        frontend=CNNFrontend(shapes=SMALL_CNN), specaug=None, normalize=None,
        preencoder=LinearProjection(16, dim), encoder=encoder, losses=built,
        masker=Masking(dim, mask_length=4, **(mask_conf or {})),
        ema=EMATeacher(encoder) if "dinosr" in losses else None,
    )


def real_batch(lengths=(400, 290)):
    return tiny_batch(lengths, num_classes=8, stride=10, kernel=20)


@pytest.mark.parametrize("losses", LOSS_SETS)
@pytest.mark.parametrize("kind", ["tiny", "real"])
def test_forward_backward(losses, kind):
    model = tiny_model(losses) if kind == "tiny" else real_model(losses)
    batch = tiny_batch() if kind == "tiny" else real_batch()
    model.train()
    loss, stats, weight = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.requires_grad
    assert stats["loss"].item() == pytest.approx(loss.item())
    assert weight.item() == stats[f"{losses[0]}_count_m"].item() > 0
    for name in losses:
        assert f"{name}_loss" in stats
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert model.masker.mask_embedding.grad is not None
    assert sum(p.grad is not None for p in trainable) > 0.9 * len(trainable)
    model.after_optimizer_step(1)


@pytest.mark.parametrize("kind", ["tiny", "real"])
def test_padding_invariance_eval_without_masking(kind):
    if kind == "tiny":
        model, batch = tiny_model(mask_conf={"mask_prob": 0.0}), tiny_batch((800, 560))
    else:
        model = real_model(mask_conf={"mask_prob": 0.0},
                           hubert_conf={"skip_nomask": False, "pred_nomask_weight": 1.0})
        batch = real_batch((400, 290))
    model.eval()
    with torch.no_grad():
        feats, lengths = model.extract_features(batch["speech"], batch["speech_lengths"])
        _, stats, _ = model(**batch)
        for b in range(2):
            n = int(batch["speech_lengths"][b])
            one = {k: v[b : b + 1] for k, v in batch.items()}
            one["speech"] = one["speech"][:, :n]
            single, single_len = model.extract_features(one["speech"], one["speech_lengths"])
            t = int(single_len[0])
            assert t == int(lengths[b])
            for h_batch, h_one in zip(feats, single):
                torch.testing.assert_close(h_batch[b, :t], h_one[0], atol=2e-5, rtol=1e-4)
    assert stats["hubert_count_m"].item() == 0
    assert stats["hubert_count_u"].item() == int(lengths.sum())  # padding never counted


def test_eval_masking_is_deterministic():
    model = tiny_model().eval()
    batch = tiny_batch()
    with torch.no_grad():
        l1, _, w1 = model(**batch)
        l2, _, w2 = model(**batch)
    assert l1.item() == l2.item() and w1.item() == w2.item() > 0


def test_after_optimizer_step_calls_each_hook_once(monkeypatch):
    model = tiny_model(("hubert", "dinosr"))
    calls = []
    monkeypatch.setattr(model.ema, "step", lambda student, step: calls.append(("ema", step)))
    monkeypatch.setattr(model.losses["dinosr"], "after_optimizer_step",
                        lambda step: calls.append(("dinosr", step)))
    model(**tiny_batch())
    assert calls == []  # forward never advances schedules
    model.after_optimizer_step(3)
    assert calls == [("ema", 3), ("dinosr", 3)]


def test_teacher_sees_unmasked_input():
    model = tiny_model(("dinosr",))
    seen = {}
    teacher = model.ema.model
    original = teacher.forward

    def spy(xs_pad, ilens, **kwargs):
        seen["x"] = xs_pad.clone()
        return original(xs_pad, ilens, **kwargs)

    teacher.forward = spy
    batch = tiny_batch()
    model.train()
    model(**batch)
    x, _ = model.encode_features(batch["speech"], batch["speech_lengths"])
    torch.testing.assert_close(seen["x"], x)


def test_teacher_never_sees_specaug_but_student_does():
    from espnet2.asr.specaug.specaug import SpecAug

    model = tiny_model(("dinosr",))
    model.specaug = SpecAug(apply_freq_mask=False, apply_time_mask=False,
                            apply_freq_warp=True, freq_warp_range=(0.7, 0.7))
    seen = {}
    for name, module in (("teacher", model.ema.model), ("student", model.encoder)):
        original = module.forward

        def spy(xs_pad, ilens, _name=name, _orig=original, **kwargs):
            seen[_name] = xs_pad.detach().clone()
            return _orig(xs_pad, ilens, **kwargs)

        module.forward = spy
    batch = tiny_batch()
    model.train()
    model(**batch)
    model.eval()
    clean, _ = model.encode_features(batch["speech"], batch["speech_lengths"])
    torch.testing.assert_close(seen["teacher"], clean)
    model.train()
    warped, _ = model.encode_features(batch["speech"], batch["speech_lengths"])
    assert not torch.allclose(warped, clean)
    assert not torch.allclose(seen["student"], clean)


def test_align_labels_trims_pads_and_hides_padding():
    text = torch.tensor([[1, 2, 3, 4, 5], [6, 7, -1, -1, -1]])
    labels = align_labels(text, torch.tensor([5, 2]), torch.tensor([4, 3]), 4)
    assert labels.tolist() == [[1, 2, 3, 4], [6, 7, -1, -1]]
    labels = align_labels(text[:, :2], torch.tensor([2, 2]), torch.tensor([4, 3]), 4)
    assert labels.tolist() == [[1, 2, -1, -1], [6, 7, -1, -1]]


def test_label_mismatch_warns_once(caplog):
    model = tiny_model()
    batch = tiny_batch()
    batch["text_lengths"] = batch["text_lengths"] - 10
    with caplog.at_level(logging.WARNING):
        model(**batch)
        model(**batch)
    assert sum("mismatch" in r.message for r in caplog.records) == 1


def test_missing_pieces_are_reported():
    with pytest.raises(ValueError, match="masking.*EMA teacher"):
        ESPnetSSLModel(TinyFrontend(), None, None, TinyPreEncoder(), TinyEncoder(),
                       [DinoSRLoss(16, num_codebooks=2, codebook_size=4)])
    blocks = TinyEncoder().num_layers()
    with pytest.raises(ValueError, match=rf"loss 'hubert': layers=\[{blocks}\]: .* out of "
                       rf"range for an encoder with {blocks} blocks"):
        ESPnetSSLModel(TinyFrontend(), None, None, TinyPreEncoder(), TinyEncoder(),
                       [HuBERTLoss(16, 4, final_dim=4, layers=[blocks])], masker=Masking(16))
    model = tiny_model()
    batch = tiny_batch()
    with pytest.raises(ValueError, match="text"):
        model(batch["speech"], batch["speech_lengths"])


def test_codebooks_fp32_in_model_state_dict():
    model = tiny_model(("dinosr",))
    sd = model.state_dict()
    assert sd["losses.dinosr.codebook_sums"].dtype == torch.float32
    assert sd["losses.dinosr.codebook_counts"].dtype == torch.float32
    assert "ema.model.pos_conv.weight" in sd


# fairseq HuBERT Base (hubert_base_ls960, km500 labels), counted module by module:
#   CNN 4,200,448 (conv 1->512 k10 no bias + GroupNorm 1,024; 4 x k3 and 2 x k2 512->512 convs)
#   feature LayerNorm(512) 1,024; post_extract_proj 393,984; mask_emb 768
#   encoder: pos_conv 4,719,488 (weight_v 768x48x128, weight_g 128, bias 768) + LayerNorm 1,536
#            + 12 x 7,087,872 (attention 4 x 590,592 + 2 LayerNorms + FFN 768-3072-768)
#   final_proj 768->256: 196,864; label_embs_concat 504 x 256 = 129,024
FAIRSEQ_HUBERT_BASE = 94_697_600


def _hubert_base(num_classes: int, layer_norm: bool) -> ESPnetSSLModel:
    with torch.device("meta"):
        encoder = TransformerEncoder(768, 768, attention_heads=12, linear_units=3072,
                                     num_blocks=12, input_layer="wav2vec",
                                     normalize_before=False, pos_enc_layer_type="conv")
        return ESPnetSSLModel(
            frontend=CNNFrontend(norm_mode="group_norm", bias=False), specaug=None,
            normalize=None, preencoder=LinearProjection(512, 768, layer_norm=layer_norm),
            encoder=encoder,
            losses=[HuBERTLoss(768, num_classes, final_dim=256, loss_type="cosine")],
            masker=Masking(768),
        )


def test_hubert_base_parameter_count():
    # fairseq's label dictionary adds 4 special symbols to the 500 clusters (504 label
    # embeddings), and fairseq LayerNorms the CNN features (LinearProjection(layer_norm=True)).
    exact = _hubert_base(504, layer_norm=True)
    assert sum(p.numel() for p in exact.parameters()) == FAIRSEQ_HUBERT_BASE
    assert sum(p.numel() for p in exact.encoder.parameters()) == 89_775_488
    # ESPnet's form (500 classes, no feature LayerNorm) differs by exactly those two pieces.
    espnet = _hubert_base(500, layer_norm=False)
    assert sum(p.numel() for p in espnet.parameters()) == FAIRSEQ_HUBERT_BASE - 4 * 256 - 2 * 512
    # EMA skip keys (ema_layers_only) must find the conv positional embedding by name
    assert any(n.startswith("pos_conv.") for n, _ in exact.encoder.named_parameters())


def test_feature_grad_mult_scales_frontend_gradient_only():
    grads = {}
    for g in (1.0, 0.1):
        torch.manual_seed(0)
        model = tiny_model()
        model.feature_grad_mult = g
        torch.manual_seed(1)
        loss, _, _ = model(**tiny_batch())
        loss.backward()
        grads[g] = (model.frontend.conv.weight.grad.clone(), loss.item())
    assert grads[0.1][1] == pytest.approx(grads[1.0][1])
    torch.testing.assert_close(grads[0.1][0], 0.1 * grads[1.0][0])


@pytest.mark.parametrize("losses", [("dinosr",), ("hubert",)])
def test_no_masked_frames_gives_finite_zero_loss(losses):
    model = tiny_model(losses, mask_conf={"mask_prob": 0.0})
    loss, stats, weight = model(**tiny_batch())
    loss.backward()
    assert loss.item() == 0.0 and weight.item() == 0
    assert all(torch.isfinite(v).all() for v in stats.values())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_keeps_teacher_and_codebooks_fp32(device):
    model = real_model(("hubert", "dinosr")).to(device)
    batch = {k: v.to(device) for k, v in real_batch().items()}
    model.train()
    with torch.autocast(device, dtype=torch.bfloat16):
        loss, stats, weight = model(**batch)
    loss.backward()
    model.after_optimizer_step(1)
    assert torch.isfinite(loss) and weight.device.type == device
    assert all(v.device.type == device for v in stats.values())
    assert model.losses["dinosr"].codebook_sums.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.ema.parameters())
