"""Train a tiny model for one epoch, then: extraction shapes per layer, pack -> reload gives the
same hidden states, PretrainedSSL works as a frontend, the probe CLI writes its report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2.bin import pack_ssl, ssl_extract, ssl_probe, ssl_train
from espnet2.data.kaldi import read_kv
from espnet2.ssl.extract import read_hidden_states
from espnet2.ssl.pretrained import load_model, load_pretrained
from espnet2.testing.tiny_recipe import GEOM, data_opts, write_tiny_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_tiny_recipe(tmp_path_factory.mktemp("pretrained"))
    exp = root / "exp"
    ssl_train.main([*data_opts(root), "--output_dir", str(exp), "--max_epoch", "1"])
    return root, exp


def _batch(root):
    wav = read_kv(root / "data" / "valid" / "wav.scp")
    waves = [sf.read(p, dtype="float32")[0] for p in wav.values()]
    lens = torch.tensor([len(w) for w in waves])
    speech = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        speech[i, : len(w)] = torch.from_numpy(w)
    return speech, lens


def test_extract_writes_every_layer_with_encoder_frame_counts(trained, tmp_path):
    root, exp = trained
    out = tmp_path / "feats"
    ssl_extract.main(
        [
            "--exp_dir",
            str(exp),
            "--data_dir",
            str(root / "data" / "valid"),
            "--output_dir",
            str(out),
            "--device",
            "cpu",
        ]
    )
    wav = read_kv(root / "data" / "valid" / "wav.scp")
    for layer in (0, 1):
        got = dict(read_hidden_states(out, layer))
        assert set(got) == set(wav)
        for utt, feats in got.items():
            n = sf.info(wav[utt]).frames
            assert feats.shape == (GEOM.num_frames(n), 16)


def test_pack_reload_gives_same_hidden_states(trained, tmp_path):
    root, exp = trained
    model, _, _ = load_model(exp)
    speech, lens = _batch(root)
    with torch.no_grad():
        ref, ref_lens = model.extract_features(speech, lens)
    zip_path = tmp_path / "packed.zip"
    pack_ssl.main(["--exp_dir", str(exp), "--outpath", str(zip_path)])
    pre = load_pretrained(zip_path)
    with torch.no_grad():
        hs, hlens = pre.hidden_states(speech, lens)
    assert len(hs) == len(ref) == 2
    assert torch.equal(hlens, ref_lens)
    for a, b in zip(hs, ref):
        torch.testing.assert_close(a, b)
    # as a frontend: (B, N) -> (B, T, D) weighted sum; only the layer weights are trainable
    feats, flens = pre(speech, lens)
    assert feats.shape == (speech.size(0), int(flens.max()), pre.output_size())
    assert [n for n, p in pre.named_parameters() if p.requires_grad] == ["layer_logits"]


def test_random_init_differs_from_trained(trained):
    root, exp = trained
    model, config, _ = load_model(exp)
    from espnet2.ssl.pretrained import build_model_from_config

    torch.manual_seed(0)
    rand = build_model_from_config(config).eval()
    speech, lens = _batch(root)
    with torch.no_grad():
        a, _ = model.extract_features(speech, lens)
        b, _ = rand.extract_features(speech, lens)
    assert not torch.allclose(a[-1], b[-1])


def test_random_init_baseline_is_the_runs_starting_point(tmp_path):
    """The probe's random-init encoder has exactly the weights training started from (same
    seed): a run with lr 0 saves them as 1epoch.pth."""
    from espnet2.ssl.pretrained import build_initial_model

    root = write_tiny_recipe(tmp_path)
    ssl_train.main([*data_opts(root), "--output_dir", str(tmp_path / "e"), "--max_epoch", "1",
                    "--seed", "7", "--optim_conf", "lr=0.0"])  # no update moves a weight
    start = torch.load(tmp_path / "e" / "1epoch.pth", map_location="cpu")
    _, config, _ = load_model(tmp_path / "e", "1epoch.pth")
    assert config["seed"] == 7
    torch.manual_seed(123)  # whatever the caller's RNG state
    rand = build_initial_model(config).state_dict()
    assert set(rand) == set(start)
    for k, v in start.items():
        assert torch.equal(rand[k], v), k
    other = build_initial_model({**config, "seed": 8}).state_dict()
    assert not all(torch.equal(other[k], v) for k, v in start.items())


def _label_train_set(root, labels, prefix=""):
    """Two classes alternating over the tiny train set, 3 utterances per speaker; returns the
    train dir (its utt2spk rewritten) and writes ``utt label`` lines to ``labels``."""
    d = root / "data" / "train"
    utts = list(read_kv(d / "wav.scp"))
    labels.write_text("".join(f"{u} {prefix}{i % 2}\n" for i, u in enumerate(utts)))
    (d / "utt2spk").write_text("".join(f"{u} s{i // 3}\n" for i, u in enumerate(utts)))
    return d


def test_probe_cli_writes_report(trained, tmp_path):
    root, exp = trained
    # utterance labels + speakers: 2 "speakers" x 2 classes in train, 1 unseen speaker in test
    d = _label_train_set(root, tmp_path / "train_labels")
    v = root / "data" / "valid"
    vutts = list(read_kv(v / "wav.scp"))
    (tmp_path / "test_labels").write_text("".join(f"{u} {i % 2}\n" for i, u in enumerate(vutts)))
    (v / "utt2spk").write_text("".join(f"{u} s9\n" for u in vutts))
    out = tmp_path / "probe"
    ssl_probe.main(
        [
            "--exp_dir",
            str(exp),
            "--train_dir",
            str(d),
            "--train_labels",
            str(tmp_path / "train_labels"),
            "--test_dir",
            str(v),
            "--test_labels",
            str(tmp_path / "test_labels"),
            "--output_dir",
            str(out),
            "--fs",
            "8000",
            "--tasks",
            "digit",
            "--epochs",
            "20",
            "--device",
            "cpu",
        ]
    )
    report = json.loads((out / "probe.json").read_text())
    names = {r["name"] for r in report["tasks"]["digit"]["results"]}
    assert names == {"exp", "exp_random_init", "mfcc13_mean", "mfcc39_meanstd"}
    rows = [line for line in (out / "probe.md").read_text().splitlines()
            if line.startswith("| digit |")]
    assert len([r for r in rows if " - " not in r]) == 6  # 2 per model (weighted, best layer),
    # 1 per MFCC; then one paired difference per pair of the 4 selected probes
    assert len([r for r in rows if " - " in r]) == 6
    assert "exp - exp_random_init" in report["tasks"]["digit"]["paired_differences"]
    assert len((out / "digit_predictions.tsv").read_text().splitlines()) == len(vutts) + 1
    assert np.isfinite([r["test_acc"] for r in report["tasks"]["digit"]["results"]]).all()


def test_load_model_accepts_a_model_file(trained):
    """A torch .pth is a zip too: it must load as a model file, not as a packed archive."""
    root, exp = trained
    by_file, _, exp_dir = load_model(exp / "valid.loss.ave.pth")
    by_dir, _, _ = load_model(exp)
    assert exp_dir == exp
    for (n, a), (_, b) in zip(by_file.state_dict().items(), by_dir.state_dict().items()):
        assert torch.equal(a, b), n


def test_supervised_cli_writes_an_exp_dir_the_probe_can_read(trained, tmp_path):
    from espnet2.bin import ssl_supervised
    from espnet2.ssl.pretrained import build_initial_model

    root, exp = trained
    d = _label_train_set(root, tmp_path / "labels", prefix="c")
    out = tmp_path / "sup"
    ssl_supervised.main(["--exp_dir", str(exp), "--train_dir", str(d), "--train_labels",
                         str(tmp_path / "labels"), "--output_dir", str(out), "--fs", "8000",
                         "--seed", "4", "--epochs", "2", "--batch_size", "3"])
    info = json.loads((out / "supervised.json").read_text())
    assert info["classes"] == ["c0", "c1"] and len(info["epoch_losses"]) == 2
    model, config, exp_dir = load_model(out, "supervised.pth")
    assert exp_dir == out and config["seed"] == 4
    start = build_initial_model(config).state_dict()
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])]
    assert any(k.startswith("encoder.") for k in moved)
    with pytest.raises(SystemExit, match="config.yaml not found"):
        ssl_supervised.main(["--exp_dir", str(tmp_path), "--train_dir", str(d), "--train_labels",
                             str(tmp_path / "labels"), "--output_dir", str(tmp_path / "x")])
