"""The lr schedule is checked against the run's length before anything is written: a schedule
that cannot exist for this run is refused (exit 2, nothing written), one whose warmup outlasts
the run trains with a warning. The update count the preflight names is the one training makes."""

from __future__ import annotations

import logging
import re

from conftest import assert_untouched

from espnet2.testing.corpus import snapshot
from espnet2.train.checkpoint import load_checkpoint


def test_cosine_warmup_longer_than_the_run_is_refused_with_the_true_update_count(
        corpus, ssl_train):
    before = snapshot(corpus.user_files())
    out = corpus.root / "exp"
    cosine = ["--scheduler", "warmupcosine", "--max_epoch", "2"]
    code, err = ssl_train(corpus.args(out, extra=[*cosine, "--scheduler_conf",
                                                  "warmup_steps=1000"]))
    assert code == 2, err[-2000:]
    assert_untouched(corpus, before, out)
    m = re.search(r"scheduler warmupcosine: .*must exceed warmup_steps=1000; this run makes "
                  r"(\d+) updates \(max_epoch 2 x (\d+) batches per epoch / accum_grad 1\): "
                  r"lower warmup_steps", err)
    assert m, err[-2000:]
    updates, per_epoch = int(m.group(1)), int(m.group(2))
    assert updates == 2 * per_epoch >= 2

    # the corrected run makes exactly that many updates
    code, err = ssl_train(corpus.args(out, extra=[*cosine, "--scheduler_conf",
                                                  f"warmup_steps={updates - 1}"]))
    assert code == 0, err[-2000:]
    state = load_checkpoint(out / "checkpoint.pth")
    assert state["counters"]["step"] == updates == state["scheduler"]["total_steps"]


def test_warmuplr_longer_than_the_run_trains_with_a_warning(corpus, ssl_train, caplog):
    out = corpus.root / "exp"
    with caplog.at_level(logging.WARNING, logger="espnet2.tasks.preflight"):
        code, err = ssl_train(corpus.args(out, extra=["--scheduler", "warmuplr",
                                                      "--scheduler_conf", "warmup_steps=400"]))
    assert code == 0, err[-2000:]
    warnings = [r.getMessage() for r in caplog.records if r.name == "espnet2.tasks.preflight"]
    assert any(re.search(r"warmup_steps=400 but this run makes only \d+ updates .*never "
                         r"reaches its configured peak", w) for w in warnings), warnings
    assert (out / "checkpoint.pth").exists()


def test_tristage_phases_that_do_not_sum_to_one_are_refused(corpus, ssl_train):
    out = corpus.root / "exp"
    code, err = ssl_train(corpus.args(out, extra=["--scheduler", "tristagelr", "--scheduler_conf",
                                                  "phase_ratio=[0.5,0.5,0.5]"]))
    assert code == 2 and "phase_ratio [0.5, 0.5, 0.5] must sum to 1" in err, err[-2000:]
    assert not out.exists()


def test_batches_are_counted_for_the_launcher_world_size(monkeypatch):
    """Under torchrun (WORLD_SIZE set, --ngpu 0 on CPU) every batch needs one utterance per
    rank, as the loader will build them: batch_bins that hold one utterance but not two are
    refused by the preflight on 2 ranks (before, the loader raised after config.yaml)."""
    import argparse

    from espnet2.tasks.preflight import check_schedule

    args = argparse.Namespace(num_iters_per_epoch=None, ngpu=0, batch_type="numel",
                              batch_size=20, batch_bins=1000, max_steps=None, max_epoch=1,
                              accum_grad=1, scheduler="warmupcosine",
                              scheduler_conf={"warmup_steps": 2})
    lengths = [{f"u{i}": 900 for i in range(4)}]  # one utterance per batch
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert check_schedule(args, lengths) == []  # 4 updates > warmup 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    (error,) = check_schedule(args, lengths)
    assert error.startswith("train batches for 2 rank(s):")
    assert "2 utterance(s) of length 900 need 1800 bins > batch_bins=1000" in error
