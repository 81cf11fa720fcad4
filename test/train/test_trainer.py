"""Trainer on one process: exact resume, accumulation, skip-on-NaN, outputs, AMP, threads."""

from __future__ import annotations

import logging
import os
import time

import pytest
import torch
from train_fakes import FakeLoader, Interrupted, TinyModel

from espnet2.train.checkpoint import load_latest_checkpoint
from espnet2.train.optim import build_optimizer
from espnet2.train.options import BatchLoader, TrainerOptions
from espnet2.train.schedulers import build_scheduler
from espnet2.train.threads import choose_num_threads
from espnet2.train.trainer import Trainer, TrainingDiverged

QUIET = {"use_tensorboard": False, "use_matplotlib": False}


def make(tmp_path, loader, valid=None, dropout=0.0, sched=True, **opts):
    torch.manual_seed(0)
    model = TinyModel(dropout)
    opt = build_optimizer("adamw", model.parameters(), {"lr": 1e-2})
    sch = build_scheduler("warmuplr", opt, {"warmup_steps": 3}) if sched else None
    options = TrainerOptions(output_dir=tmp_path, **{**QUIET, **opts})
    return Trainer(model, opt, sch, loader, valid, options), model


def test_fake_loader_follows_protocol():
    assert isinstance(FakeLoader(), BatchLoader)


def test_resume_mid_epoch_reproduces_uninterrupted_losses(tmp_path):
    """Kill in epoch 2 after a mid-epoch checkpoint; the resumed run continues bit-exactly."""
    kw = {"max_epoch": 2, "accum_grad": 2, "save_every_n_steps": 2}
    full, m_full = make(tmp_path / "full", FakeLoader(5), FakeLoader(2, seed=1), 0.2, **kw)
    full.run()
    assert len(m_full.losses) == 10 + 4  # 2 epochs x 5 train batches + 2 x 2 valid batches

    first, m_a = make(tmp_path / "cut", FakeLoader(5, crash_at=(2, 3)), FakeLoader(2, seed=1),
                      0.2, **kw)
    with pytest.raises(Interrupted):
        first.run()
    # steps: epoch 1 = 3 updates (windows [0,1] [2,3] [4]); step 4 in epoch 2 saved batch 2
    resumed, m_b = make(tmp_path / "cut", FakeLoader(5), FakeLoader(2, seed=1), 0.2,
                        resume=True, **kw)
    resumed.run()
    assert resumed.step == full.step == 6
    train_full = m_full.losses[:5] + m_full.losses[7:12]  # valid losses sit after each epoch
    assert m_a.losses[:5] + m_a.losses[7:10] == train_full[:8]
    assert m_b.losses[:3] == train_full[7:]  # batches 2..4 of epoch 2, same dropout masks
    assert m_b.steps == [5, 6]
    for (k, a), b in zip(m_full.state_dict().items(), m_b.state_dict().values()):
        assert torch.equal(a, b), k
    h_full, h_b = full.reporter.history, resumed.reporter.history
    for phase in ("train", "valid"):
        for key, v in h_full[2][phase].items():
            assert h_b[2][phase][key] == pytest.approx(v, rel=1e-9), (phase, key)
    assert full.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


def test_resume_at_epoch_boundary(tmp_path):
    full, m_full = make(tmp_path / "a", FakeLoader(3), max_epoch=3)
    full.run()
    part, _ = make(tmp_path / "b", FakeLoader(3), max_epoch=2)
    part.run()
    rest, m_rest = make(tmp_path / "b", FakeLoader(3), max_epoch=3, resume=True)
    rest.run()
    assert m_rest.losses == m_full.losses[6:]
    assert rest.reporter.history[1] == full.reporter.history[1]


def test_accumulation_matches_big_batch_and_steps_once_per_update(tmp_path):
    """accum_grad=2 over batches of 2 == batches of 4 when every utterance has equal length."""
    small = FakeLoader(4, global_batch=2, equal_lengths=True)
    big = FakeLoader(2, global_batch=4, equal_lengths=True)
    big.global_batch = lambda e, i: _concat(small.global_batch(e, 2 * i),
                                            small.global_batch(e, 2 * i + 1))
    t_acc, m_acc = make(tmp_path / "acc", small, max_epoch=2, accum_grad=2)
    t_acc.run()
    t_big, m_big = make(tmp_path / "big", big, max_epoch=2)
    t_big.run()
    assert m_acc.steps == m_big.steps == [1, 2, 3, 4]
    assert int(m_acc.updates) == 4
    for a, b in zip(m_acc.parameters(), m_big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _concat(a: dict, b: dict) -> dict:
    return {"utt_id": a["utt_id"] + b["utt_id"], "speech": torch.cat([a["speech"], b["speech"]]),
            "speech_lengths": torch.cat([a["speech_lengths"], b["speech_lengths"]])}


def test_nan_batch_is_skipped_counted_and_named(tmp_path, caplog):
    trainer, model = make(tmp_path, FakeLoader(4, nan_at={(1, 2)}), max_epoch=1)
    caplog.set_level(logging.WARNING)
    trainer.run()
    assert trainer.skipped == 1 and trainer.step == 3
    assert model.steps == [1, 2, 3]  # after_optimizer_step never sees the skipped update
    assert "e1b2u1" in caplog.text and "skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in model.parameters())
    train = trainer.reporter.history[1]["train"]
    assert min(model.losses[i] for i in (0, 1, 3)) <= train["loss"]  # NaN kept out of the stats
    assert train["loss"] <= max(model.losses[i] for i in (0, 1, 3))


def test_consecutive_skips_stop_with_checkpoint(tmp_path):
    bad = {(1, i) for i in range(2, 8)}
    trainer, _ = make(tmp_path, FakeLoader(8, nan_at=bad), max_epoch=1, max_consecutive_skips=3)
    with pytest.raises(TrainingDiverged, match="3 consecutive updates skipped"):
        trainer.run()
    state, _ = load_latest_checkpoint(tmp_path)
    assert state["counters"] == {"epoch": 1, "batch": 5, "step": 2, "skipped": 3,
                                 "consecutive_skips": 3}


def test_exception_in_forward_names_utterances(tmp_path, caplog):
    trainer, model = make(tmp_path, FakeLoader(3), max_epoch=1)
    calls = {"n": 0}
    orig = model.forward

    def failing(**batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return orig(**batch)

    model.forward = failing
    with pytest.raises(RuntimeError, match="boom"):
        trainer.run()
    assert "e1b1u0" in caplog.text and "batch 1" in caplog.text


def test_outputs_files_log_line_and_pruning(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    trainer, _ = make(tmp_path, FakeLoader(4), FakeLoader(2, seed=1), max_epoch=3,
                      keep_nbest_models=[1, 2], log_interval=2, use_tensorboard=True,
                      use_matplotlib=True, best_model_criterion=[("valid", "loss", "min"),
                                                                 ("valid", "nokey", "max")])
    trainer.run()
    files = set(os.listdir(tmp_path))
    assert {"checkpoint.pth", "checkpoint.prev.pth", "latest.pth", "valid.loss.best.pth",
            "valid.loss.ave_1best.pth", "valid.loss.ave_2best.pth", "valid.loss.ave.pth"} <= files
    assert os.readlink(tmp_path / "latest.pth") == "3epoch.pth"
    best = sorted(trainer.reporter.history, key=lambda e: trainer.reporter.history[e]["valid"]
                  ["loss"])[:2]
    assert {f for f in files if f.endswith("epoch.pth")} == {f"{e}epoch.pth" for e in {*best, 3}}
    assert not any("nokey" in f for f in files) and "nokey" in caplog.text
    assert (tmp_path / "images" / "loss.png").stat().st_size > 0
    assert any((tmp_path / "tensorboard" / "train").iterdir())
    line = next(r.getMessage() for r in caplog.records if "1epoch:2/4" in r.getMessage())
    for field in ("loss=", "acc=", "lr=", "grad_norm=", "audio_s_per_s=", "data_wait=",
                  "peak_mem_gb=", "eta="):
        assert field in line


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_on_cpu_trains(tmp_path, dtype):
    trainer, model = make(tmp_path, FakeLoader(4), max_epoch=2, use_amp=True, amp_dtype=dtype)
    trainer.run()
    assert (trainer.scaler is not None) == (dtype == "float16")
    assert trainer.step + trainer.skipped == 8 and trainer.step >= 6
    assert model.losses[-1] < model.losses[0]


def test_no_forward_run_only_iterates(tmp_path):
    loader = FakeLoader(3)
    trainer, model = make(tmp_path, loader, max_epoch=2, no_forward_run=True)
    trainer.run()
    assert loader.calls == 6 and model.losses == [] and trainer.step == 0


def test_max_steps_stops_training(tmp_path):
    trainer, model = make(tmp_path, FakeLoader(4), max_epoch=5, max_steps=6)
    trainer.run()
    assert trainer.step == 6 and max(trainer.reporter.history) == 2


def test_invalid_options_are_reported_together(tmp_path):
    with pytest.raises(ValueError, match="accum_grad=0.*amp_dtype='fp8'"):
        TrainerOptions(output_dir=tmp_path, accum_grad=0, amp_dtype="fp8")


def test_thread_choice():
    assert choose_num_threads(None, 1, available=2, others_busy=0.1)[0] == 2
    assert choose_num_threads(None, 1, available=2, others_busy=0.9)[0] == 1  # would spin
    assert choose_num_threads(None, 1, available=2, others_busy=3.5)[0] == 1
    assert choose_num_threads(None, 1, available=1, others_busy=0.0)[0] == 1
    assert choose_num_threads(None, 2, available=16, others_busy=0.0)[0] == 8
    assert choose_num_threads(None, 2, available=16, others_busy=10.0)[0] == 6
    assert choose_num_threads(None, 32, available=16, others_busy=0.0)[0] == 1
    n, why = choose_num_threads(None, 1, available=4)
    assert n == 4 and "unknown" in why
    n, why = choose_num_threads(3, 1, available=2, others_busy=1.9)
    assert n == 3 and "--num_threads 3 given" in why
    with pytest.raises(ValueError, match="--num_threads 0"):
        choose_num_threads(0)


def test_other_processes_cpu_use_is_measured():
    """A busy sibling process shows up as about one busy CPU; our own work does not count."""
    import subprocess
    import sys

    from espnet2.train import threads

    threads.mark_start()
    t = time.monotonic()
    while time.monotonic() - t < 0.3:  # our own CPU use: excluded
        pass
    idle = threads.others_busy_cpus()
    if idle is None:
        pytest.skip("no /proc/stat (not Linux)")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        threads.mark_start()
        time.sleep(0.6)
        busy = threads.others_busy_cpus()
    finally:
        spinner.kill()
    assert busy > idle + 0.5, (idle, busy)


def test_patience_and_intermediate_averages(tmp_path):
    """train/lr peaks in epoch 1 -> stop after `patience` more epochs; averages every 2."""
    trainer, _ = make(tmp_path, FakeLoader(2), FakeLoader(1, seed=1), max_epoch=10,
                      patience=2, early_stopping_criterion=("train", "lr", "max"),
                      nbest_averaging_interval=2, keep_nbest_models=[2],
                      best_model_criterion=[("train", "loss", "min")])
    trainer.run()  # warmuplr(3): the lr after epoch 1 (2 updates) is the peak, then decays
    assert max(trainer.reporter.history) == 3  # best epoch 1, no improvement in epochs 2, 3
    assert (tmp_path / "train.loss.ave_2best.till2epoch.pth").is_file()
    assert not (tmp_path / "train.loss.ave_2best.till3epoch.pth").exists()


def test_configure_logging_writes_train_log(tmp_path):
    from espnet2.train.reporter import configure_logging

    configure_logging(tmp_path, rank=0)
    logging.getLogger("espnet2.x").info("hello log")
    for h in logging.getLogger().handlers:
        h.flush()
    assert "hello log" in (tmp_path / "train.log").read_text()
    configure_logging(None, rank=1)
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_amp_and_fused_optimizer(tmp_path, dtype):
    from espnet2.train.distributed import DistInfo

    torch.manual_seed(0)
    model = TinyModel().cuda()
    opt = build_optimizer("adamw", model.parameters(), {"lr": 1e-2})
    assert opt.defaults["fused"] is True
    options = TrainerOptions(output_dir=tmp_path, max_epoch=2, use_amp=True, amp_dtype=dtype,
                             **QUIET)
    trainer = Trainer(model, opt, None, FakeLoader(4), FakeLoader(2, seed=1), options,
                      DistInfo(device=torch.device("cuda", 0)))
    trainer.run()
    assert trainer.step + trainer.skipped == 8 and model.losses[-1] < model.losses[0]
    assert trainer.reporter.history[2]["valid"]["loss"] < trainer.reporter.history[1]["train"][
        "loss"]
