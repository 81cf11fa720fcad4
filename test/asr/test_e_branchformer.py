"""E-Branchformer encoder and cgMLP: shapes, hidden states, padding invariance, gradients."""

from __future__ import annotations

import pytest
import torch

from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.layers.cgmlp import ConvolutionalGatingMLP

D = 16


def make_ebf(input_size: int = 12, **kw) -> EBranchformerEncoder:
    conf = dict(output_size=D, attention_heads=2, cgmlp_linear_units=32, cgmlp_conv_kernel=5,
                num_blocks=2, input_layer=None, linear_units=32, dropout_rate=0.1,
                positional_dropout_rate=0.1, attention_dropout_rate=0.1)
    conf.update(kw)
    return EBranchformerEncoder(input_size=input_size, **conf)


def test_shapes_lengths_and_all_hidden_states():
    enc = make_ebf().eval()
    xs, ilens = torch.randn(2, 9, 12), torch.tensor([9, 6])
    out, olens, state = enc(xs, ilens)
    assert out.shape == (2, 9, D) and state is None and enc.output_size() == D
    assert olens.tolist() == [9, 6]
    (out2, hs), _, _ = enc(xs, ilens, return_all_hs=True)
    assert len(hs) == len(enc.encoders) == 2
    assert hs[-1] is out2
    torch.testing.assert_close(out2, out)
    # After the final LayerNorm (no affine change at init): zero mean per frame.
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 9), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"use_ffn": True, "macaron_ffn": True, "use_linear_after_conv": True,
         "gate_activation": "gelu", "merge_conv_kernel": 5},
        {"attention_layer_type": "selfattn", "pos_enc_layer_type": "abs_pos"},
        {"input_layer": "linear", "rel_pos_type": "legacy"},
    ],
)
def test_padding_invariance(kw):
    enc = make_ebf(**kw).eval()
    long, short = torch.randn(1, 11, 12), torch.randn(1, 6, 12)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 5), value=-3.0)])
    (out, hs), _, _ = enc(batch, torch.tensor([11, 6]), return_all_hs=True)
    (alone, hs_alone), _, _ = enc(short, torch.tensor([6]), return_all_hs=True)
    torch.testing.assert_close(out[1, :6], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hs[0][1, :6], hs_alone[0][0], atol=1e-5, rtol=1e-5)
    long_alone, _, _ = enc(long, torch.tensor([11]))
    torch.testing.assert_close(out[0], long_alone[0], atol=1e-5, rtol=1e-5)


def test_cgmlp_padding_aware_and_identity_init():
    mlp = ConvolutionalGatingMLP(D, 32, 5, 0.0).eval()
    x = torch.randn(2, 8, D)
    mask = (torch.arange(8)[None, :] < torch.tensor([8, 5])[:, None])[:, None, :]
    garbage = x.clone()
    garbage[1, 5:] = 50.0
    torch.testing.assert_close(mlp(x, mask)[1, :5], mlp(garbage, mask)[1, :5])
    torch.testing.assert_close(mlp(x, mask)[1, :5], mlp(x[1:, :5], mask[1:, :, :5])[0])
    # ESPnet's gate init makes the gate ~1: CSGU output ~ its first half (after dropout 0).
    mlp.csgu.espnet_initialization_fn()
    u = torch.randn(1, 4, 32)
    torch.testing.assert_close(mlp.csgu(u), u[..., :16], atol=1e-4, rtol=1e-4)


def test_gradients_flow_to_every_parameter():
    enc = make_ebf(use_ffn=True, macaron_ffn=True).train()
    out, _, _ = enc(torch.randn(2, 7, 12), torch.tensor([7, 5]))
    out.pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_activation_checkpointing_gives_identical_grads(dropout):
    xs, ilens = torch.randn(2, 7, 12), torch.tensor([7, 5])
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(3)
        enc = make_ebf(activation_checkpointing=ckpt, dropout_rate=dropout).train()
        torch.manual_seed(4)
        (out, hs), _, _ = enc(xs, ilens, return_all_hs=True)
        (out.sum() + hs[0].sum()).backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_layer_drop_keeps_hidden_state_count():
    enc = make_ebf(layer_drop_rate=1.0, dropout_rate=0.0, positional_dropout_rate=0.0).train()
    xs = torch.randn(2, 7, 12)
    (out, hs), _, _ = enc(xs, torch.tensor([7, 5]), return_all_hs=True)
    assert len(hs) == 2 and hs[-1] is out
    torch.testing.assert_close(out, enc.after_norm(enc.embed(xs)[0]))


def test_bad_options_raise_clear_errors():
    with pytest.raises(NotImplementedError, match="frame-preserving"):
        make_ebf(input_layer="conv2d")
    with pytest.raises(ValueError, match="merge_conv_kernel"):
        make_ebf(merge_conv_kernel=4)
    with pytest.raises(ValueError, match="gate_activation"):
        make_ebf(gate_activation="softmax")
    with pytest.raises(ValueError, match="interctc_layer_idx"):
        make_ebf(interctc_layer_idx=[2])


def test_intermediate_ctc_outputs_and_conditioning():
    enc = make_ebf(num_blocks=3, interctc_layer_idx=[1, 2], interctc_use_conditioning=True).eval()

    class TinyCTC:
        def softmax(self, h):
            return torch.softmax(h[..., :5], dim=-1)

    enc.conditioning_layer = torch.nn.Linear(5, D)
    (out, inter), _, _ = enc(torch.randn(2, 6, 12), torch.tensor([6, 4]), ctc=TinyCTC())
    assert [i for i, _ in inter] == [1, 2] and inter[0][1].shape == (2, 6, D)
    enc.conditioning_layer = None
    with pytest.raises(ValueError, match="conditioning_layer"):
        enc(torch.randn(2, 6, 12), torch.tensor([6, 4]), ctc=TinyCTC())
