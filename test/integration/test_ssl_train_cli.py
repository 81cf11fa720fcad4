"""End to end: ``python -m espnet2.bin.ssl_train`` on synthetic audio (collect stats, train 2
epochs, resume, multiple_iterator, refusing to clobber an experiment)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from espnet2.bin import split_scps, ssl_train
from espnet2.testing.tiny_recipe import data_opts, write_tiny_recipe


@pytest.fixture
def recipe(tmp_path):
    return write_tiny_recipe(tmp_path)


def test_cli_collect_stats_then_train_then_resume(recipe):
    stats = recipe / "stats"
    ssl_train.main([*data_opts(recipe), "--collect_stats", "true", "--output_dir", str(stats)])
    shapes = ["--train_shape_file", str(stats / "train" / "speech_shape"),
              "--valid_shape_file", str(stats / "valid" / "speech_shape")]
    exp = recipe / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "espnet2.bin.ssl_train", *data_opts(recipe), *shapes,
           "--output_dir", str(exp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["encoder_conf"]["layer_drop_rate"] == 0.0  # fully resolved
    assert config["util"][0]["conf"]["mask_prob"] == 0.5
    for name in ("checkpoint.pth", "2epoch.pth", "valid.loss.best.pth", "train.log"):
        assert (exp / name).exists(), name
    log = (exp / "train.log").read_text()
    assert "2epoch" in log and "hubert_loss" in log
    state = torch.load(exp / "2epoch.pth", map_location="cpu", weights_only=True)
    assert any(k.startswith("losses.hubert.") for k in state)
    from espnet2.ssl.pretrained import load_model

    model, _, _ = load_model(exp)  # config.yaml rebuilds the trained model
    assert type(model).__name__ == "ESPnetSSLModel"

    # the same dir with a different config and no --resume: refused, nothing overwritten
    before = (exp / "config.yaml").read_text()
    bad = subprocess.run([*cmd, "--max_epoch", "3"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "holds a different config" in bad.stderr
    assert (exp / "config.yaml").read_text() == before

    # --resume true continues from checkpoint.pth to epoch 3 only
    ssl_train.main([*data_opts(recipe), *shapes, "--output_dir", str(exp), "--max_epoch", "3",
                    "--resume", "true"])
    log = (exp / "train.log").read_text()
    assert "3epoch" in log and (exp / "3epoch.pth").exists()


def test_multiple_iterator_trains_on_split_dirs(recipe):
    stats = recipe / "stats"
    ssl_train.main([*data_opts(recipe), "--collect_stats", "true", "--output_dir", str(stats)])
    tr = recipe / "data" / "train"
    splits = recipe / "splits2"
    split_scps.main(["--scps", str(tr / "wav.scp"), str(tr / "text"),
                     str(stats / "train" / "speech_shape"), "--num_splits", "2",
                     "--output_dir", str(splits)])
    exp = recipe / "exp_split"
    ssl_train.main([*data_opts(recipe, train_dir=splits), "--multiple_iterator", "true",
                    "--train_shape_file", str(splits / "speech_shape"),
                    "--valid_shape_file", str(stats / "valid" / "speech_shape"),
                    "--max_epoch", "1", "--output_dir", str(exp)])
    assert (exp / "1epoch.pth").exists()


def test_dinosr_without_token_list_trains(recipe):
    exp = recipe / "exp_dinosr"
    loss = "[{name: dinosr, conf: {num_codebooks: 2, codebook_size: 4}}]"
    ssl_train.main([*data_opts(recipe, labels=False), "--loss", loss, "--util", "[]",
                    "--max_epoch", "1", "--output_dir", str(exp)])
    assert (exp / "1epoch.pth").exists()
    assert [u["name"] for u in yaml.safe_load((exp / "config.yaml").read_text())["util"]] == [
        "mask", "ema"]


def _hubert_amp_yaml() -> str:
    """The ESPnet train_hubert_amp.yaml fixture kept in test/tasks/test_config.py."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tasks" / "test_config.py"
    spec = importlib.util.spec_from_file_location("_ssl_test_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HUBERT_AMP_YAML


def test_espnet_hubert_amp_yaml_trains_with_small_sizes(recipe):
    (recipe / "amp.yaml").write_text(_hubert_amp_yaml())
    opts = data_opts(recipe)
    opts[opts.index("--config") + 1] = str(recipe / "amp.yaml")
    exp = recipe / "exp_amp"
    ssl_train.main([
        *opts, "--frontend_conf", "shapes=[[16,10,5],[16,8,4]],fs=8k",
        "--preencoder_conf", "output_size=16",
        "--encoder_conf", "output_size=16,attention_heads=2,linear_units=32,num_blocks=2",
        "--loss", "[{name: hubert, conf: {num_classes: 10, final_dim: 8}}]",
        "--batch_bins", "16000", "--num_workers", "0", "--max_epoch", "1",
        "--scheduler_conf", "warmup_steps=10", "--use_tensorboard", "false",
        "--use_matplotlib", "false", "--output_dir", str(exp)])
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["encoder_conf"]["input_layer"] == "wav2vec" and config["max_epoch"] == 1
    assert (exp / "1epoch.pth").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_ranks(recipe):
    """DDP (gloo) through torchrun: rank 0 writes the config, logs and checkpoints."""
    exp = recipe / "exp_ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "-m", "espnet2.bin.ssl_train", *data_opts(recipe), "--max_epoch", "1",
           "--output_dir", str(exp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rank0]" in proc.stderr and "[rank1]" not in (exp / "train.log").read_text()
    assert (exp / "1epoch.pth").exists()


@pytest.mark.slow
def test_torchrun_two_nodes_rendezvous_on_localhost(recipe):
    """Two torchrun "nodes" (one CPU rank each) meet at 127.0.0.1: both train the same number of
    steps as one global batch split across ranks, rank 0 alone writes, and the loss lands near
    the single-process run's (masks are drawn per rank, so equality is not expected here; the
    exact DDP == single-process check is test/train/test_ddp_trainer.py)."""
    from espnet2.train.distributed import free_port

    single = recipe / "exp_single"
    ssl_train.main([*data_opts(recipe), "--max_epoch", "1", "--output_dir", str(single)])
    exp = recipe / "exp_2nodes"
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
             str(rank), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
             port, "-m", "espnet2.bin.ssl_train", *data_opts(recipe), "--max_epoch", "1",
             "--output_dir", str(exp)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    log = (exp / "train.log").read_text()
    assert "rank 0 of world size 2" in log and "[rank1]" not in log, log[:2000]
    state = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    ref = torch.load(single / "checkpoint.pth", map_location="cpu", weights_only=False)
    hist, ref_hist = state["reporter"]["history"], ref["reporter"]["history"]
    assert hist[1]["train"]["hubert_loss"] == pytest.approx(
        ref_hist[1]["train"]["hubert_loss"], rel=0.25)


def test_warmupcosine_by_epochs_ends_at_min_lr(recipe):
    """A horizon schedule with only max_epoch (no max_steps): the cosine spans the whole run."""
    from espnet2.train.checkpoint import load_checkpoint

    exp = recipe / "exp_cosine"
    ssl_train.main([*data_opts(recipe), "--max_epoch", "2", "--scheduler", "warmupcosine",
                    "--scheduler_conf", "warmup_steps=1,min_lr=0.0", "--output_dir", str(exp)])
    state = load_checkpoint(exp / "checkpoint.pth")
    steps = state["counters"]["step"]
    assert steps >= 4
    assert state["scheduler"]["total_steps"] == steps
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)
