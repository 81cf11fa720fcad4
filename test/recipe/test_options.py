from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from espnet2.bin import ssl_sh_options
from espnet2.recipe.options import OptionError, format_help, parse_args, parse_declarations

REPO = Path(__file__).resolve().parents[2]
SSL_SH = REPO / "egs2" / "TEMPLATE" / "ssl1" / "ssl.sh"
BLOCK = """\
#!/usr/bin/env bash
# <options>
stage=1            # first stage
stop_stage=100     # last stage
fs=16k             # sampling rate
flag=false         # a switch
mode=a             # [a|b] the mode
opts=""            # extra options
name=""            # (required) a name
# </options>
"""


@pytest.fixture
def options(tmp_path):
    script = tmp_path / "x.sh"
    script.write_text(BLOCK)
    return parse_declarations(script)


def test_declarations(options):
    assert [o.name for o in options] == [
        "stage",
        "stop_stage",
        "fs",
        "flag",
        "mode",
        "opts",
        "name",
    ]
    assert options[0].default == "1" and options[5].default == ""
    assert options[4].choices == ["a", "b"] and options[6].required


def test_parse_semantics(options):
    got = parse_args(
        options,
        [
            "--name",
            "n",
            "--stage",
            "3",
            "--fs=8k",
            "--opts",
            "--x y",
            "--stop-stage",
            "5",
            "--stage",
            "4",
            "--opts",
            "",
        ],
    )
    assert got == {"name": "n", "stage": "4", "fs": "8k", "opts": "", "stop_stage": "5"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--name", "n", "--stag", "2"], "unknown option --stag; did you mean --stage?"),
        (["--name", "n", "--stage", "two"], "takes a number"),
        (["--name", "n", "--flag", "yes"], "true or false"),
        (["--name", "n", "--mode", "c"], "not one of"),
        (["--name"], "needs a value"),
        (["--stage", "1"], "missing required option(s): --name"),
        (["--name", "n", "pos"], "positional"),
    ],
)
def test_errors(options, argv, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        parse_args(options, argv)


def test_help_lists_every_option_with_default(options):
    text = format_help(options, "Usage: x")
    for o in options:
        assert re.search(rf"--{o.name}\s.*\(default: ", text)
    assert "(default: 16k)" in text and "(default: '')" in text


def test_cli_prints_quoted_assignments_and_exit_codes(tmp_path, capsys):
    script = tmp_path / "x.sh"
    script.write_text(BLOCK)
    assert ssl_sh_options.main(["--script", str(script), "--", "--name", "a b'c"]) == 0
    out = capsys.readouterr().out
    assert (
        subprocess.run(
            ["bash", "-c", out + 'printf %s "$name"'], capture_output=True, text=True
        ).stdout
        == "a b'c"
    )
    assert ssl_sh_options.main(["--script", str(script), "--", "--bogus", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "exit 1\n" and "unknown option --bogus" in captured.err


def test_ssl_sh_declares_espnet_options_and_ours():
    names = {o.name: o.default for o in parse_declarations(SSL_SH)}
    espnet = {
        "stage": "1",
        "stop_stage": "10000",
        "skip_data_prep": "false",
        "skip_train": "false",
        "skip_eval": "false",
        "skip_packing": "true",
        "ngpu": "1",
        "num_nodes": "1",
        "nj": "32",
        "dumpdir": "dump",
        "expdir": "exp",
        "python": "python3",
        "local_data_opts": "",
        "speed_perturb_factors": "",
        "audio_format": "flac",
        "fs": "16k",
        "min_wav_duration": "0.1",
        "max_wav_duration": "20",
        "token_type": "",
        "token_list": "",
        "ssl_args": "",
        "num_splits_ssl": "1",
        "train_config": "",
        "train_set": "",
        "valid_set": "",
        "test_sets": "",
        "feats_normalize": "",
        "inference_ssl_model": "valid.total_count.ave.pth",
    }
    assert {k: names.get(k) for k in espnet} == espnet
    for ours in (
        "label_mode",
        "hubert1_dir",
        "hubert1_km_tag",
        "n_clusters",
        "portion_km",
        "km_feature",
        "km_cmvn",
        "probe_opts",
        "seeds",
        "target_gain",
    ):
        assert ours in names


def test_ssl_sh_help_is_generated_from_the_block(tmp_path):
    proc = subprocess.run(
        ["bash", str(SSL_SH), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO / "egs2" / "TEMPLATE" / "ssl1",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for o in parse_declarations(SSL_SH):
        assert f"--{o.name}" in proc.stderr
    bad = subprocess.run(
        ["bash", str(SSL_SH), "--train_set", "t", "--valid_set", "v", "--num_node", "2"],
        capture_output=True,
        text=True,
        cwd=REPO / "egs2" / "TEMPLATE" / "ssl1",
        timeout=60,
    )
    assert bad.returncode == 1 and "did you mean --num_nodes?" in bad.stderr
