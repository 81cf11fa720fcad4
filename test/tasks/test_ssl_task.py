"""SSLTask: registries, build_model wiring for every frontend x encoder x loss, token lists."""

from __future__ import annotations

import itertools

import pytest
import torch

from espnet2.tasks.ssl import SSLTask, label_classes, loss_choices, util_choices
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.config import ConfigError

FRONTENDS = {
    "wav2vec_cnn": "{shapes: [[16, 10, 5], [16, 8, 4]]}",  # geometry (45, 20, 0)
    "default": "{n_fft: 128, hop_length: 64, n_mels: 16}",
}
ENCODERS = {
    "transformer": "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, "
    "input_layer: wav2vec, pos_enc_layer_type: conv}",
    "conformer": "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, "
    "input_layer: null, cnn_module_kernel: 3}",
    "e_branchformer": "{output_size: 16, attention_heads: 2, linear_units: 32, "
    "cgmlp_linear_units: 32, num_blocks: 2, input_layer: null, cgmlp_conv_kernel: 3}",
}
LOSSES = {
    "hubert": "[{name: hubert, conf: {final_dim: 8}}]",
    "dinosr": "[{name: dinosr, conf: {num_codebooks: 2, codebook_size: 4}}]",
    "data2vec": "[{name: data2vec, conf: {average_top_k_layers: 2}}]",
    "utt_dino": "[{name: hubert, conf: {final_dim: 8}}, {name: utt_dino, conf: "
    "{num_prototypes: 8, hidden_dim: 16, bottleneck_dim: 8}, weight: 4.0}]",
}


@pytest.fixture
def token_list(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join([str(i) for i in range(10)] + ["<sos/eos>", "<unk>"]) + "\n")
    return str(path)


def tiny_args(frontend="wav2vec_cnn", encoder="transformer", loss="hubert", extra=()):
    return [
        "--frontend", frontend, "--frontend_conf", FRONTENDS[frontend],
        "--preencoder_conf", "output_size=16", "--encoder", encoder,
        "--encoder_conf", ENCODERS[encoder], "--loss", LOSSES[loss], *extra,
    ]


def registries() -> list[tuple[ClassChoices, str]]:
    regs = [*SSLTask.class_choices_list, loss_choices, util_choices]
    return [(r, name) for r in regs for name in r.classes]


@pytest.mark.parametrize("reg,name", registries(), ids=lambda x: getattr(x, "name", x))
def test_every_registry_entry_resolves_and_parses(reg, name):
    cls = reg.get_class(name)
    assert reg.type_check is None or issubclass(cls, reg.type_check)
    if reg in SSLTask.class_choices_list:
        args = SSLTask.parse_args([f"--{reg.name}", name.upper()])  # case-insensitive
        assert getattr(args, reg.name) == name
        assert isinstance(SSLTask.resolve_config(args)[f"{reg.name}_conf"], dict)
    else:
        args = SSLTask.parse_args([f"--{reg.name}", f"[{{name: {name}}}]"])
        assert getattr(args, reg.name)[0]["name"] == name


def test_class_choices_errors_and_none():
    by_name = {c.name: c for c in SSLTask.class_choices_list}
    reg = by_name["encoder"]
    with pytest.raises(ValueError, match=r"did you mean 'conformer'"):
        reg.get_class("conformr")
    with pytest.raises(ValueError, match="transformer, conformer, e_branchformer"):
        reg.get_class("trans")  # no prefix/substring/tuple-membership matching
    with pytest.raises(ValueError, match="cannot be none"):
        reg.get_class("none")
    for optional in ("specaug", "mix"):
        reg = by_name[optional]
        assert reg.get_class("null") is None and reg.get_class(None) is None
    with pytest.raises(ValueError):
        ClassChoices("x", {"a": int}, default="b")


def _batch(model, lengths=(4000, 3000)):
    geom = model.frontend.frame_geometry()
    frames = [geom.num_frames(n) for n in lengths]
    text = torch.full((len(lengths), max(frames)), -1, dtype=torch.long)
    for i, f in enumerate(frames):
        text[i, :f] = torch.randint(0, 10, (f,))
    speech = torch.randn(len(lengths), max(lengths))
    return dict(speech=speech, speech_lengths=torch.tensor(lengths), text=text,
                text_lengths=torch.tensor(frames))


@pytest.mark.parametrize("frontend,encoder,loss",
                         list(itertools.product(FRONTENDS, ENCODERS, LOSSES)))
def test_build_model_every_combination_runs(frontend, encoder, loss, token_list):
    args = SSLTask.parse_args(tiny_args(frontend, encoder, loss, ["--token_list", token_list]))
    model = SSLTask.build_model(args)
    # input-size wiring: frontend -> preencoder -> encoder -> loss
    assert model.preencoder.linear_out.in_features == model.frontend.output_size()
    assert model.preencoder.output_size() == 16 and model.encoder.output_size() == 16
    assert (model.masker is not None) and ((model.ema is not None) == (loss != "hubert"))
    model.train()
    total, stats, weight = model(**_batch(model))
    assert torch.isfinite(total) and float(weight) > 0 and "loss" in stats
    total.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.after_optimizer_step(1)  # EMA teachers and loss schedules accept the update hook
    total2, _, _ = model(**_batch(model))
    assert torch.isfinite(total2)


def test_token_list_only_for_label_losses(token_list):
    with pytest.raises(ConfigError, match="needs frame labels: pass --token_list"):
        SSLTask.build_model(SSLTask.parse_args(tiny_args(loss="hubert")))
    model = SSLTask.build_model(SSLTask.parse_args(tiny_args(loss="dinosr")))
    assert model.token_list is None


def test_num_classes_default_and_check(token_list):
    assert label_classes(["0", "1", "2", "<sos/eos>", "<unk>"]) == (3, 3)
    assert label_classes(["0", "1", "<sos/eos>\\n<unk>"]) == (2, 2)  # hubert1's one-line quirk
    args = SSLTask.parse_args(tiny_args(extra=["--token_list", token_list]))
    model = SSLTask.build_model(args)
    assert model.losses["hubert"].num_classes == 10  # K, the specials excluded
    bad = tiny_args(extra=["--token_list", token_list])
    bad[bad.index("--loss") + 1] = "[{name: hubert, conf: {final_dim: 8, num_classes: 5}}]"
    with pytest.raises(ConfigError, match=r"num_classes=5 .* up to id 9"):
        SSLTask.build_model(SSLTask.parse_args(bad))


def test_utils_added_when_needed_and_conf_passed(token_list):
    cfg = SSLTask.resolve_config(SSLTask.parse_args(tiny_args(loss="dinosr")))
    assert [u["name"] for u in cfg["util"]] == ["mask", "ema"]
    assert cfg["util"][0]["conf"]["mask_prob"] == 0.8  # Masking's default shown
    extra = ["--util", "[{name: mask, conf: {mask_prob: 0.5, mask_length: 3}}]",
             "--token_list", token_list]
    args = SSLTask.parse_args(tiny_args(extra=extra))
    model = SSLTask.build_model(args)
    assert model.masker.mask_prob == 0.5 and model.ema is None
    assert SSLTask.resolve_config(args)["loss"][0]["weight"] == 1.0


def test_loss_weight_and_preencoder_size_conflict(token_list):
    extra = ["--token_list", token_list]
    args = tiny_args(extra=extra)
    args[args.index("--loss") + 1] = "[{name: hubert, conf: {final_dim: 8}, weight: 0.5}]"
    model = SSLTask.build_model(SSLTask.parse_args(args))
    assert model.loss_weights["hubert"] == 0.5
    bad = SSLTask.parse_args(tiny_args(extra=[*extra, "--preencoder_conf", "input_size=7"]))
    with pytest.raises(ConfigError, match=r"preencoder_conf.input_size=7 .* outputs 16"):
        SSLTask.build_model(bad)


def test_fs_humanfriendly(token_list):
    args = SSLTask.parse_args(tiny_args(extra=["--frontend_conf", "fs=8k"]))
    assert SSLTask.frontend_fs(args) == 8000
    assert args.frontend_conf["shapes"] == [[16, 10, 5], [16, 8, 4]]  # merged, not replaced


def test_init_param_and_freeze_param(tmp_path, token_list):
    from espnet2.train.init_param import freeze_parameters, load_init_param, parse_init_param

    assert parse_init_param("m.pth:encoder:encoder:encoder.embed,encoder.after_norm") == (
        "m.pth", "encoder", "encoder", ["encoder.embed", "encoder.after_norm"])
    assert parse_init_param("m.pth") == ("m.pth", None, None, [])
    args = SSLTask.parse_args(tiny_args(extra=["--token_list", token_list]))
    src, dst = SSLTask.build_model(args), SSLTask.build_model(args)
    torch.save({"model": src.state_dict()}, tmp_path / "checkpoint.pth")  # a training checkpoint
    block = "encoders.0.feed_forward.w_1.weight"
    assert not torch.equal(src.encoder.get_parameter(block), dst.encoder.get_parameter(block))
    load_init_param(dst, f"{tmp_path}/checkpoint.pth:encoder:encoder:encoders.1")
    assert torch.equal(src.encoder.get_parameter(block), dst.encoder.get_parameter(block))
    other = "encoders.1.feed_forward.w_1.weight"  # excluded
    assert not torch.equal(src.encoder.get_parameter(other), dst.encoder.get_parameter(other))
    w_src, w_dst = next(src.frontend.parameters()), next(dst.frontend.parameters())
    assert not torch.equal(w_src, w_dst)  # outside src_key: untouched
    with pytest.raises(ConfigError, match="no parameter starts with 'decoder.'"):
        load_init_param(dst, f"{tmp_path}/checkpoint.pth:decoder")
    freeze_parameters(dst, ["frontend"])
    assert all(not p.requires_grad for p in dst.frontend.parameters())
    assert all(p.requires_grad for p in dst.preencoder.parameters())
    with pytest.raises(ConfigError, match="matches no parameter"):
        freeze_parameters(dst, ["frontnd"])


@pytest.mark.parametrize("method", ["bert", "xavier_uniform"])
def test_init_methods_keep_weight_norm_magnitude(method, token_list):
    """``--init``: bert = N(0, 0.02) on the encoder's linear layers only (fairseq
    init_bert_params); every method keeps a weight-normalised layer's magnitude g."""
    base = tiny_args(extra=["--token_list", token_list, "--encoder_conf",
                            "{output_size: 64, linear_units: 256}"])
    torch.manual_seed(0)
    plain = SSLTask.build_model(SSLTask.parse_args(base))
    torch.manual_seed(0)
    model = SSLTask.build_model(SSLTask.parse_args([*base, "--init", method]))
    pos = "pos_conv.conv.parametrizations.weight."
    g = model.encoder.get_parameter(pos + "original0")
    assert torch.equal(g, plain.encoder.get_parameter(pos + "original0"))  # magnitude kept
    v = pos + "original1"
    changed = not torch.equal(model.encoder.get_parameter(v), plain.encoder.get_parameter(v))
    assert changed == (method != "bert")  # bert leaves the positional conv alone
    w = model.encoder.get_parameter("encoders.0.feed_forward.w_1.weight")  # (256, 64)
    b = model.encoder.get_parameter("encoders.0.feed_forward.w_1.bias")
    assert not torch.equal(w, plain.encoder.get_parameter("encoders.0.feed_forward.w_1.weight"))
    assert torch.count_nonzero(b) == 0
    if method == "bert":
        assert abs(float(w.detach().std()) - 0.02) < 0.002
        for name, p in model.preencoder.named_parameters():  # outside the encoder: untouched
            assert torch.equal(p, plain.preencoder.get_parameter(name))
    else:  # xavier: U(±sqrt(6 / (fan_in + fan_out)))
        assert float(w.detach().abs().max()) <= (6 / (64 + 256)) ** 0.5
        assert not torch.equal(model.preencoder.linear_out.weight,
                               plain.preencoder.linear_out.weight)
