"""TransformerEncoder: Base size, padding invariance, return_all_hs, layer drop, checkpointing."""

from __future__ import annotations

import pytest
import torch

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

D = 16


def _encoder(**kwargs) -> TransformerEncoder:
    conf = dict(
        output_size=D,
        attention_heads=2,
        linear_units=32,
        num_blocks=2,
        input_layer="wav2vec",
        pos_enc_layer_type="conv",
        normalize_before=False,
    )
    conf.update(kwargs)
    return TransformerEncoder(conf.pop("input_size", D), **conf)


def test_hubert_base_encoder_parameter_count():
    d, ffn, blocks, k, groups = 768, 3072, 12, 128, 16
    encoder = TransformerEncoder(
        d,
        d,
        12,
        ffn,
        blocks,
        input_layer="wav2vec",
        normalize_before=False,
        pos_enc_layer_type="conv",
    )
    attention = 4 * (d * d + d)
    feed_forward = d * ffn + ffn + ffn * d + d
    block = attention + 2 * d + feed_forward + 2 * d
    # weight norm over dim 2: magnitude (1, 1, k), direction (d, d / groups, k), conv bias d
    pos_conv = k + d * (d // groups) * k + d
    expected = blocks * block + pos_conv + 2 * d  # + the LayerNorm after the conv embedding
    assert sum(p.numel() for p in encoder.parameters()) == expected == 89_775_488
    assert len(encoder.encoders) == encoder.num_layers() == 12
    assert isinstance(encoder.encoders[0].feed_forward.activation, torch.nn.GELU)


@pytest.mark.parametrize("normalize_before", [False, True])
@pytest.mark.parametrize("pos", ["conv", "abs"])
@pytest.mark.parametrize("input_layer", ["wav2vec", "linear", None])
def test_padding_invariance_and_batch_consistency(normalize_before, pos, input_layer):
    encoder = _encoder(
        input_size=12,
        normalize_before=normalize_before,
        pos_enc_layer_type=pos,
        input_layer=input_layer,
    ).eval()
    x = torch.randn(3, 20, 12)
    ilens = torch.tensor([20, 13, 6])
    x[1, 13:] = 30.0
    with torch.no_grad():
        out, olens, state = encoder(x, ilens)
        assert state is None and olens.tolist() == [20, 13, 6]
        assert out.shape == (3, 20, D)
        for i, n in enumerate(ilens.tolist()):
            alone, _, _ = encoder(x[i : i + 1, :n], ilens[i : i + 1])
            torch.testing.assert_close(out[i, :n], alone[0], rtol=1e-4, atol=1e-4)


def test_return_all_hs_convention():
    for normalize_before in (False, True):
        encoder = _encoder(num_blocks=3, normalize_before=normalize_before).eval()
        x, ilens = torch.randn(2, 9, D), torch.tensor([9, 7])
        (out, hidden), olens, _ = encoder(x, ilens, return_all_hs=True)
        assert len(hidden) == 3 and hidden[-1] is out
        plain, _, _ = encoder(x, ilens)
        torch.testing.assert_close(plain, out)
        assert all(h.shape == (2, 9, D) for h in hidden)
        assert not torch.allclose(hidden[0], hidden[1])


def test_pre_ln_has_final_norm_and_post_ln_has_embedding_norm():
    pre, post = _encoder(normalize_before=True), _encoder(normalize_before=False)
    assert pre.after_norm is not None and pre.embed_norm is None
    assert post.after_norm is None and post.embed_norm is not None
    relu = _encoder(input_layer="linear")
    assert isinstance(relu.encoders[0].feed_forward.activation, torch.nn.ReLU)


def test_layer_drop_is_inactive_in_eval_and_skips_in_training():
    reference = _encoder(num_blocks=3, dropout_rate=0.0).eval()
    dropping = _encoder(num_blocks=3, dropout_rate=0.0, layer_drop_rate=1.0)
    dropping.load_state_dict(reference.state_dict())
    x, ilens = torch.randn(2, 8, D), torch.tensor([8, 5])
    dropping.eval()
    torch.testing.assert_close(dropping(x, ilens)[0], reference(x, ilens)[0])
    dropping.train()  # every block skipped: all hidden states equal the embedding
    (out, hidden), _, _ = dropping(x, ilens, return_all_hs=True)
    embedded = dropping._embed(x, torch.ones(2, 1, 8, dtype=torch.bool))
    assert len(hidden) == 3
    for h in hidden:
        torch.testing.assert_close(h[0], embedded[0])


def test_layer_drop_partial_keeps_skipped_input():
    torch.manual_seed(3)
    encoder = _encoder(num_blocks=6, dropout_rate=0.0, layer_drop_rate=0.5).train()
    x, ilens = torch.randn(1, 5, D), torch.tensor([5])
    (_, hidden), _, _ = encoder(x, ilens, return_all_hs=True)
    same = [torch.equal(hidden[i], hidden[i - 1]) for i in range(1, 6)]
    assert any(same) and not all(same)  # seed 3 skips some blocks but not all


@pytest.mark.parametrize("normalize_before", [False, True])
def test_activation_checkpointing_same_gradients(normalize_before):
    plain = _encoder(normalize_before=normalize_before, dropout_rate=0.2).train()
    ckpt = _encoder(
        normalize_before=normalize_before, dropout_rate=0.2, activation_checkpointing=True
    ).train()
    ckpt.load_state_dict(plain.state_dict())
    x, ilens = torch.randn(2, 10, D), torch.tensor([10, 6])
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(7)  # same dropout masks; checkpoint replays the RNG state
        out, olens, _ = model(x, ilens)
        out.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_projection_when_sizes_differ_and_bad_options():
    encoder = _encoder(input_size=10)
    assert isinstance(encoder.embed, torch.nn.Linear)
    assert _encoder().embed is None
    with pytest.raises(NotImplementedError, match="input_layer='conv2d'"):
        TransformerEncoder(D, D, input_layer="conv2d")
    with pytest.raises(NotImplementedError, match="interctc"):
        TransformerEncoder(D, D, input_layer="wav2vec", interctc_layer_idx=[1])
    with pytest.raises(ValueError, match="pos_enc_layer_type='rel_pos'"):
        TransformerEncoder(D, D, input_layer="wav2vec", pos_enc_layer_type="rel_pos")


def test_bf16_autocast_close_to_float32():
    from espnet2.asr.frontend.cnn import CNNFrontend

    frontend = CNNFrontend(shapes=[(D, 10, 5), (D, 3, 2)]).eval()
    encoder = _encoder().eval()
    x, ilens = torch.randn(2, 1200), torch.tensor([1200, 900])
    with torch.no_grad():
        ref, _, _ = encoder(*frontend(x, ilens))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, olens, _ = encoder(*frontend(x, ilens))
    assert torch.isfinite(out).all()
    n = int(olens[1])
    torch.testing.assert_close(out.float()[1, :n], ref[1, :n], atol=0.15, rtol=0.05)


def test_conv_pos_kernel_and_groups_are_configurable():
    enc = TransformerEncoder(16, 16, attention_heads=2, linear_units=32, num_blocks=1,
                             input_layer="wav2vec", normalize_before=False,
                             pos_enc_layer_type="conv", conv_pos=8, conv_pos_groups=4)
    weight = enc.pos_conv.conv.parametrizations.weight.original1
    assert weight.shape == (16, 4, 8)
    y, olens, _ = enc.eval()(torch.randn(2, 11, 16), torch.tensor([11, 7]))
    assert y.shape == (2, 11, 16) and olens.tolist() == [11, 7]
    with pytest.raises(ValueError, match="conv_pos_groups"):
        TransformerEncoder(16, 16, input_layer="wav2vec", pos_enc_layer_type="conv",
                           conv_pos_groups=3)
