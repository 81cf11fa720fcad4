"""Crashes and faults never cost a user their run.

* ``kill -9`` during training and during a checkpoint write (forked ``SSLTask.main`` processes,
  so no interpreter start-up per run): ``--resume true`` continues from the last complete
  checkpoint, every file that is left loads, and training finishes.
* a truncated or corrupt ``checkpoint.pth`` is detected; the previous one is used, with a warning.
* a crash inside a DataLoader worker (``num_workers=2``) names the utterance.
* a failing step writes the batch's utterance ids to train.log.
* NaN on one of two gloo ranks (CLI level: ``main`` -> launcher env -> DDP trainer): both ranks
  skip together, and after ``--max_consecutive_skips`` the run stops with a clear message and a
  checkpoint. (The trainer-level case is in test/train/test_ddp_trainer.py.)
"""

from __future__ import annotations

import faulthandler
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from conftest import no_partial_files

from espnet2.testing.corpus import write_corpus
from espnet2.train import checkpoint as ckpt

FORK = multiprocessing.get_context("fork")


# ----------------------------------------------------------------------------- child processes
def _slow_training(step_s: float, write_s: float, marker: Path | None) -> None:
    """In a child: sleep after each update; write checkpoint.pth slowly, touching ``marker.N``
    when the N-th checkpoint write starts (so the parent can kill it mid-write)."""
    from espnet2.train import trainer
    from espnet2.utils.fileio import atomic_write

    update = trainer.Trainer._update

    def slow_update(self, loss):
        out = update(self, loss)
        time.sleep(step_s)
        return out

    writes = [0]

    def slow_save(obj, path):
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
        with atomic_write(path, "wb") as f:
            if Path(path).name == ckpt.CHECKPOINT and marker is not None:
                writes[0] += 1
                Path(f"{marker}.{writes[0]}").touch()
            chunk = max(1, len(data) // 20)
            for i in range(0, len(data), chunk):
                f.write(data[i:i + chunk])
                f.flush()
                time.sleep(write_s / 20)

    trainer.Trainer._update = slow_update
    ckpt.atomic_save_torch = slow_save


def _child(cmd: list[str], step_s: float = 0.0, write_s: float = 0.0,
           marker: Path | None = None) -> None:
    from espnet2.tasks.ssl import SSLTask

    _slow_training(step_s, write_s, marker)
    SSLTask.main(cmd)


def _start(cmd, **kw) -> multiprocessing.Process:
    proc = FORK.Process(target=_child, args=(cmd,), kwargs=kw, daemon=True)
    proc.start()
    return proc


def _wait_for(path: Path, proc, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.is_alive(), f"child exited ({proc.exitcode}) before {path.name} appeared"
        assert time.monotonic() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.005)


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL


def _everything_left_loads(out: Path) -> None:
    """Trusted checkpoints and every epoch/average file load; load_latest never raises."""
    for path in out.glob("*.pth"):
        if path.name in (ckpt.CHECKPOINT, ckpt.PREVIOUS):
            if ckpt.verify_checkpoint(path):
                assert "model" in ckpt.load_checkpoint(path)
        else:
            assert isinstance(torch.load(path, map_location="cpu", weights_only=True), dict)
    ckpt.load_latest_checkpoint(out)


@pytest.fixture
def run_args(corpus):
    def make(out, *extra):
        return corpus.args(out, extra=["--max_epoch", "3", *extra])
    return make


def _finished(out: Path, epochs: int) -> None:
    assert (out / f"{epochs}epoch.pth").is_file()
    state, _ = ckpt.load_latest_checkpoint(out)
    assert state["counters"]["epoch"] == epochs + 1 and state["counters"]["batch"] == 0
    _everything_left_loads(out)
    assert not no_partial_files(out)


# ----------------------------------------------------------------------------- kill -9
@pytest.mark.timeout(90)
def test_kill9_during_training_then_resume(corpus, run_args, ssl_train):
    out = corpus.root / "exp"
    proc = _start(run_args(out, "--save_every_n_steps", "1"), step_s=0.15)
    _wait_for(out / "checkpoint.pth.sha256", proc)
    _kill(proc)
    state, _ = ckpt.load_latest_checkpoint(out)
    assert state["counters"]["step"] >= 1
    _everything_left_loads(out)
    code, err = ssl_train(run_args(out, "--save_every_n_steps", "1", "--resume", "true"))
    assert code == 0, err[-2000:]
    log = (out / "train.log").read_text()
    assert "resumed from" in log and f"step {state['counters']['step']}" in log
    _finished(out, 3)


@pytest.mark.timeout(90)
def test_kill9_during_checkpoint_write_then_resume(corpus, run_args, ssl_train):
    out = corpus.root / "exp"
    marker = corpus.root / "writing"
    proc = _start(run_args(out), write_s=2.0, marker=marker)
    _wait_for(Path(f"{marker}.2"), proc)  # the 2nd checkpoint write has begun: kill inside it
    time.sleep(0.3)
    _kill(proc)
    assert no_partial_files(out), "the kill should have landed inside the write"
    assert not (out / ckpt.CHECKPOINT).exists() and ckpt.verify_checkpoint(out / ckpt.PREVIOUS)
    state, path = ckpt.load_latest_checkpoint(out)
    assert path.name == ckpt.PREVIOUS and state["counters"]["epoch"] == 2
    code, err = ssl_train(run_args(out, "--resume", "true"))
    assert code == 0, err[-2000:]
    assert "checkpoint.prev.pth: epoch 2 batch 0" in (out / "train.log").read_text()
    _finished(out, 3)  # also: the dead writer's temp file was cleaned on resume


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill9_at_random_moments_repeatedly(corpus, run_args, ssl_train):
    out = corpus.root / "exp"
    rng = torch.Generator().manual_seed(1234)
    cmd = run_args(out, "--max_epoch", "4", "--save_every_n_steps", "1", "--resume", "true")
    for _ in range(4):
        proc = _start(cmd, step_s=0.05, write_s=0.2)
        time.sleep(0.2 + 0.8 * float(torch.rand((), generator=rng)))
        if proc.is_alive():
            _kill(proc)
        _everything_left_loads(out)
    code, err = ssl_train(cmd)
    assert code == 0, err[-2000:]
    _finished(out, 4)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill9_of_the_real_cli_process_then_resume(corpus, run_args, ssl_train):
    """The same through ``python -m espnet2.bin.ssl_train`` (a fresh interpreter)."""
    out = corpus.root / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "espnet2.bin.ssl_train",
           *run_args(out, "--max_epoch", "1000", "--save_every_n_steps", "1")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 90
        while not (out / "checkpoint.prev.pth.sha256").exists():
            assert proc.poll() is None and time.monotonic() < end, "no checkpoint was written"
            time.sleep(0.01)
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    _everything_left_loads(out)
    epoch = ckpt.load_latest_checkpoint(out)[0]["counters"]["epoch"]
    code, err = ssl_train(run_args(out, "--max_epoch", str(epoch + 1), "--resume", "true"))
    assert code == 0, err[-2000:]
    _finished(out, epoch + 1)


# ----------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("damage", ["truncate", "bitflip", "no_checksum"])
def test_corrupt_checkpoint_falls_back_to_previous(corpus, run_args, ssl_train, damage):
    out = corpus.root / "exp"
    code, err = ssl_train(run_args(out, "--max_epoch", "2"))
    assert code == 0, err[-2000:]
    path = out / ckpt.CHECKPOINT
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "no_checksum":  # killed between the rename and the sidecar write
        (out / "checkpoint.pth.sha256").unlink()
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    code, err = ssl_train(run_args(out, "--max_epoch", "3", "--resume", "true"))
    assert code == 0, err[-2000:]
    log = (out / "train.log").read_text()
    assert "checkpoint.pth is incomplete or corrupt (checksum mismatch); trying the previous" \
        in log
    assert "resumed from" in log and "checkpoint.prev.pth: epoch 2 batch 0" in log
    _finished(out, 3)


def test_both_checkpoints_corrupt_is_a_clear_error(corpus, run_args, ssl_train):
    out = corpus.root / "exp"
    assert ssl_train(run_args(out, "--max_epoch", "2"))[0] == 0
    for name in (ckpt.CHECKPOINT, ckpt.PREVIOUS):
        (out / name).write_bytes((out / name).read_bytes()[:100])
    with pytest.raises(RuntimeError, match="both fail their checksums. Restart without"):
        ssl_train(run_args(out, "--max_epoch", "3", "--resume", "true"))


# ----------------------------------------------------------------------------- loader / step
def test_dataloader_worker_crash_names_the_utterance(corpus, run_args, ssl_train, monkeypatch):
    from espnet2.data.dataset import SSLDataset

    get = SSLDataset.__getitem__

    def crash(self, utt):
        if utt == "train_02":
            raise RuntimeError("decoder blew up")
        return get(self, utt)

    monkeypatch.setattr(SSLDataset, "__getitem__", crash)
    out = corpus.root / "exp"
    code, err = ssl_train(run_args(out, "--num_workers", "2"))
    assert code == 2
    assert "utt 'train_02': RuntimeError while loading the utterance: decoder blew up" in err
    assert "DataLoader worker" in err and not no_partial_files(out)


def test_failing_step_logs_its_utterance_ids(corpus, run_args, ssl_train, monkeypatch):
    from espnet2.ssl.espnet_model import ESPnetSSLModel

    forward, calls, seen = ESPnetSSLModel.forward, [0], []

    def broken(self, speech, speech_lengths, **kw):
        if self.training:
            calls[0] += 1
            if calls[0] == 2:
                raise ValueError("shape bug")
        return forward(self, speech, speech_lengths, **kw)

    monkeypatch.setattr(ESPnetSSLModel, "forward", broken)
    from espnet2.data.collate import SSLCollate

    collate = SSLCollate.__call__

    def record(self, items):
        batch = collate(self, items)
        seen.append(list(batch["utt_id"]))
        return batch

    monkeypatch.setattr(SSLCollate, "__call__", record)
    out = corpus.root / "exp"
    with pytest.raises(ValueError, match="shape bug"):
        ssl_train(run_args(out, "--batch_bins", "8000"))
    log = (out / "train.log").read_text()
    assert f"step failed in epoch 1 batch 1; utt ids: {seen[1]}" in log


# ----------------------------------------------------------------------------- DDP NaN
def _ddp_rank(rank: int, port: int, cmd: list[str], nan_from: int, log: str) -> None:
    sys.stderr = open(log, "w", buffering=1)  # noqa: SIM115 - the child's stderr until exit
    faulthandler.dump_traceback_later(45, file=sys.stderr)  # stacks in the log if it hangs
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from espnet2.ssl.espnet_model import ESPnetSSLModel
    from espnet2.tasks.ssl import SSLTask

    forward, calls = ESPnetSSLModel.forward, [0]

    def nan_on_rank1(self, *a, **kw):
        loss, stats, weight = forward(self, *a, **kw)
        if self.training:
            calls[0] += 1
            if rank == 1 and calls[0] >= nan_from:
                loss = loss * float("nan")
        return loss, stats, weight

    ESPnetSSLModel.forward = nan_on_rank1
    try:
        SSLTask.main(cmd)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 3
    # exit without the interpreter's thread joins: a child forked from the (threaded) pytest
    # process may inherit state that blocks them; the CLI's own exit is tested via torchrun
    sys.stderr.flush()
    os._exit(code)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_nan_on_one_gloo_rank_skips_together_then_stops(tmp_path):
    from espnet2.train.distributed import free_port

    corpus = write_corpus(tmp_path, n_train=8)
    out = tmp_path / "exp"
    cmd = corpus.args(out, extra=["--batch_bins", "8000", "--max_epoch", "3",
                                  "--max_consecutive_skips", "2"])
    port = free_port()
    logs = [str(tmp_path / f"rank{r}.err") for r in (0, 1)]
    procs = [FORK.Process(target=_ddp_rank, args=(r, port, cmd, 2, logs[r]), daemon=True)
             for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    alive = [p.pid for p in procs if p.is_alive()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    errs = [Path(f).read_text() for f in logs]
    assert not alive, f"a rank hung: {alive}\n" + "\n".join(e[-12000:] for e in errs)
    assert [p.exitcode for p in procs] == [1, 1], errs[1][-3000:]
    for err in errs:
        assert "error: 2 consecutive updates skipped (non-finite loss or gradient)" in err
        assert f"A checkpoint was saved in {out}" in err
    train_log = (out / "train.log").read_text()
    assert "the cause may be on another rank); update skipped (1 in a row" in train_log
    assert "update skipped (2 in a row" in train_log
    # the rank that produced the NaN names its utterances
    assert "rank 1 epoch" in errs[1] and "non-finite loss (nan) on this rank" in errs[1]
    assert "utt ids on this rank: ['train_" in errs[1]
    state, _ = ckpt.load_latest_checkpoint(out)
    assert state["counters"]["consecutive_skips"] == 2 and state["counters"]["step"] == 1
