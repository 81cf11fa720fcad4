"""CLI/YAML semantics: ESPnet configs load unchanged, --print_config round trip, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from espnet2.tasks.ssl import SSLTask
from espnet2.utils.config import (
    ConfigError,
    dump_yaml,
    humanfriendly_int,
    parse_dict_arg,
    str2bool,
    str_or_none,
    strict_int,
)

# ESPnet egs2/librispeech/ssl1/conf/tuning/train_hubert_amp.yaml, recreated from its key set
HUBERT_AMP_YAML = """\
input_size: none
frontend: wav2vec_cnn
frontend_conf:
    norm_mode: group_norm
    conv_mode: standard
    bias: false
    normalize_audio: False
normalize: null
specaug: null
preencoder: linear
preencoder_conf:
    output_size: 768
encoder: transformer
encoder_conf:
    output_size: 768
    attention_heads: 12
    linear_units: 3072
    num_blocks: 12
    dropout_rate: 0.1
    positional_dropout_rate: 0.0
    attention_dropout_rate: 0.1
    input_layer: wav2vec
    normalize_before: false
    pos_enc_layer_type: conv
loss:
    - name: hubert
      conf:
        num_classes: 500
        final_dim: 256
num_att_plot: 0
collate_fn_conf:
    label_downsampling: 1
    pad: False
    rand_crop: True
init: none
best_model_criterion:
-   - valid
    - total_count
    - max
keep_nbest_models: 5
max_epoch: 320
num_workers: 4
batch_type: numel
batch_bins: 44800000
optim: adam
optim_conf:
    lr: 0.0005
scheduler: warmuplr
scheduler_conf:
    warmup_steps: 32000
"""

SMALL = [
    "--frontend_conf", "shapes=[[16,10,5],[16,8,4]]", "--preencoder_conf", "output_size=16",
    "--encoder_conf", "output_size=16,attention_heads=2,linear_units=32,num_blocks=2",
    "--loss", "[{name: hubert, conf: {num_classes: 10, final_dim: 8}}]",
]


@pytest.fixture
def amp_yaml(tmp_path):
    path = tmp_path / "train_hubert_amp.yaml"
    path.write_text(HUBERT_AMP_YAML)
    return path


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join([str(i) for i in range(10)] + ["<sos/eos>", "<unk>"]) + "\n")
    return str(path)


def test_value_helpers():
    assert str2bool("True") is True and str2bool("false") is False
    with pytest.raises(ValueError):
        str2bool("maybe")
    assert str_or_none("null") is None and str_or_none("x") == "x"
    assert humanfriendly_int("16k") == 16000 and humanfriendly_int("1.5M") == 1500000
    assert strict_int("1e3") == 1000
    with pytest.raises(ValueError):
        strict_int(1.5)
    assert parse_dict_arg("a=1,b.c=[1,2],d=16k") == {"a": 1, "b": {"c": [1, 2]}, "d": "16k"}
    assert parse_dict_arg("{a: {b: true}}") == {"a": {"b": True}}


def test_espnet_hubert_amp_yaml_loads_unchanged(amp_yaml):
    args = SSLTask.parse_args(["--config", str(amp_yaml)])
    assert args.batch_bins == 44800000 and args.keep_nbest_models == [5]
    assert args.best_model_criterion == [["valid", "total_count", "max"]]
    assert args.normalize is None and args.specaug is None and args.input_size is None
    assert args.loss[0]["conf"] == {"num_classes": 500, "final_dim": 256}
    assert args.encoder_conf["num_blocks"] == 12 and args.frontend_conf["bias"] is False


def test_print_config_on_espnet_yaml_and_round_trip(amp_yaml, tmp_path, capsys):
    SSLTask.main(["--config", str(amp_yaml), "--print_config", "--batch_bins", "1.6M"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["batch_bins"] == 1600000  # the CLI wins over the YAML
    assert printed["encoder_conf"]["attention_heads"] == 12  # user value
    assert printed["encoder_conf"]["layer_drop_rate"] == 0.0  # constructor default filled in
    assert printed["util"][0]["name"] == "mask" and "mask_prob" in printed["util"][0]["conf"]
    assert printed["frontend_conf"]["shapes"][0] == [512, 10, 5]
    reloaded = tmp_path / "printed.yaml"
    dump_yaml(printed, reloaded)
    again = SSLTask.resolve_config(SSLTask.parse_args(["--config", str(reloaded)]))
    assert again == printed


def test_default_config_round_trip(tmp_path):
    first = SSLTask.resolve_config(SSLTask.parse_args([]))
    dump_yaml(first, tmp_path / "c.yaml")
    ns = SSLTask.parse_args(["--config", str(tmp_path / "c.yaml")])
    assert SSLTask.resolve_config(ns) == first


def test_espnet_yaml_builds_when_sizes_overridden(amp_yaml, tokens):
    args = SSLTask.parse_args(["--config", str(amp_yaml), "--token_list", tokens, *SMALL])
    assert args.encoder_conf["input_layer"] == "wav2vec"  # merged with the YAML
    model = SSLTask.build_model(args)
    lengths = torch.tensor([3000, 2500])
    frames = model.frontend.frame_geometry().num_frames_tensor(lengths)
    text = torch.randint(0, 10, (2, int(frames.max())))
    loss, stats, weight = model(torch.randn(2, 3000), lengths, text, frames)
    assert torch.isfinite(loss) and stats["hubert_acc_m"] >= 0


def test_unknown_keys_suggest_closest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_binz: 100\nmax_epoch: 3\nencoder_conf: {num_block: 2}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'batch_binz' \(did you mean 'batch_bins'"):
        SSLTask.parse_args(["--config", str(bad)])
    ok = tmp_path / "ok.yaml"
    ok.write_text("encoder_conf: {num_block: 2}\nloss: [{name: huber}]\n")
    with pytest.raises(ConfigError) as e:
        SSLTask.parse_args(["--config", str(ok)])
    text = str(e.value)  # both problems reported at once
    assert "'num_block'" in text and "did you mean 'num_blocks'" in text
    assert "did you mean 'hubert'" in text


def test_unknown_cli_flag_suggests(capsys):
    with pytest.raises(SystemExit):
        SSLTask.parse_args(["--max_epochs", "3"])
    assert "did you mean '--max_epoch'" in capsys.readouterr().err


def test_wrong_types_name_key_value_and_type(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_epoch: ten\nuse_amp: maybe\ngrad_clip: [1]\nbatch_type: numell\n")
    with pytest.raises(ConfigError) as e:
        SSLTask.parse_args(["--config", str(bad)])
    text = str(e.value)
    assert "max_epoch: 'ten': expected an integer" in text
    assert "use_amp: 'maybe': expected a boolean (true/false)" in text
    assert "grad_clip: [1]" in text
    assert "did you mean 'numel'" in text
    with pytest.raises(SystemExit):
        SSLTask.parse_args(["--use_amp", "yes please"])


def test_optim_and_scheduler_checked():
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        SSLTask.parse_args(["--optim", "adamww"])
    with pytest.raises(ConfigError, match=r"unknown key 'warmup_step'.*'warmup_steps'"):
        SSLTask.parse_args(["--scheduler", "warmuplr", "--scheduler_conf", "warmup_step=10"])


def test_output_dir_with_different_config_is_refused(tmp_path):
    out = tmp_path / "exp"
    args = SSLTask.parse_args(["--output_dir", str(out), "--max_epoch", "2"])
    SSLTask.prepare_output_dir(args)
    before = (out / "config.yaml").read_text()
    SSLTask.prepare_output_dir(args)  # same config: fine
    other = SSLTask.parse_args(["--output_dir", str(out), "--max_epoch", "3"])
    with pytest.raises(ConfigError, match=r"max_epoch: 2 -> 3.*--resume true"):
        SSLTask.prepare_output_dir(other)
    assert (out / "config.yaml").read_text() == before  # nothing overwritten
    resumed = SSLTask.parse_args(["--output_dir", str(out), "--max_epoch", "3", "--resume", "true"])
    SSLTask.prepare_output_dir(resumed)
    assert yaml.safe_load((out / "config.yaml").read_text())["max_epoch"] == 3


def test_deepspeed_config_runs_torch_native_with_warning(tmp_path, caplog):
    from espnet2.tasks.abs_task import deepspeed_fallback

    ds = tmp_path / "deepspeed.json"
    ds.write_text(json.dumps({"bf16": {"enabled": True}, "gradient_clipping": 1.0}))
    args = SSLTask.parse_args(["--use_deepspeed", "true", "--deepspeed_config", str(ds)])
    with caplog.at_level("WARNING"):
        deepspeed_fallback(args)
    assert args.use_amp is True and args.grad_clip == 1.0 and args.use_deepspeed is False
    assert "torch-native" in caplog.text and "activation checkpointing" in caplog.text


def test_noop_espnet_keys_accepted(tmp_path, caplog):
    y = tmp_path / "c.yaml"
    y.write_text("num_att_plot: 3\nsort_in_batch: descending\nconfig: conf/x.yaml\n")
    with caplog.at_level("WARNING"):
        SSLTask.parse_args(["--config", str(y)])
    assert "num_att_plot" in caplog.text and "sort_in_batch" not in caplog.text


def test_mix_slot_resolves_with_defaults_and_checks_keys(amp_yaml, tokens):
    base = ["--config", str(amp_yaml), "--token_list", tokens, *SMALL]
    args = SSLTask.parse_args([*base, "--mix", "utterance", "--mix_conf", "mix_prob=0.3"])
    config = SSLTask.resolve_config(args)
    assert config["mix"] == "utterance"
    assert config["mix_conf"] == {"mix_prob": 0.3, "max_overlap": 0.5, "snr_range": [-5.0, 5.0]}
    assert SSLTask.build_model(args).mixer.mix_prob == 0.3
    with pytest.raises(ConfigError, match=r"unknown key 'mix_prb'.*'mix_prob'"):
        SSLTask.parse_args(["--mix", "utterance", "--mix_conf", "mix_prb=0.3"])
    assert SSLTask.build_model(SSLTask.parse_args(base)).mixer is None


def test_configs_written_before_an_option_existed_still_load_and_match(tmp_path, amp_yaml,
                                                                         tokens):
    """An experiment dir from an older version (no ``mix``/``mix_conf`` keys) is rebuilt by
    the model loaders with today's defaults, and rerunning it is not 'a different config'."""
    from espnet2.ssl.pretrained import build_model_from_config

    out = tmp_path / "exp"
    base = ["--config", str(amp_yaml), "--token_list", tokens, *SMALL, "--output_dir", str(out)]
    args = SSLTask.parse_args(base)
    SSLTask.prepare_output_dir(args)
    old = yaml.safe_load((out / "config.yaml").read_text())
    del old["mix"], old["mix_conf"]
    (out / "config.yaml").write_text(yaml.safe_dump(old))
    SSLTask.prepare_output_dir(args)  # not refused
    assert build_model_from_config(old).mixer is None
    with pytest.raises(ConfigError, match=r"mix: None -> 'utterance'"):
        SSLTask.prepare_output_dir(SSLTask.parse_args([*base, "--mix", "utterance"]))
