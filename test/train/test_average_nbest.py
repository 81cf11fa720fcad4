"""n-best ranking, averaging (integer buffers not averaged), links and pruning."""

from __future__ import annotations

import logging
import os

import torch

from espnet2.train.average_nbest import (
    average_nbest_models,
    kept_epochs,
    prune_epoch_files,
    ranked_epochs,
)

HISTORY = {
    1: {"train": {"loss": 3.0}, "valid": {"loss": 2.0, "acc": 0.1}},
    2: {"train": {"loss": 2.0}, "valid": {"loss": 1.0, "acc": 0.3}},
    3: {"train": {"loss": 1.0}, "valid": {"loss": 1.5, "acc": 0.3}},
    4: {"train": {"loss": 0.5}, "valid": {"loss": 1.2, "acc": 0.2}},
}
CRITERIA = [("valid", "loss", "min"), ("valid", "acc", "max"), ("valid", "cer", "min")]


def _write_epochs(tmp_path):
    for e in HISTORY:
        torch.save({"w": torch.full((3,), float(e)), "count": torch.tensor(e),
                    "h": torch.full((2,), float(e), dtype=torch.bfloat16)},
                   tmp_path / f"{e}epoch.pth")


def test_ranking_and_ties_prefer_later_epochs():
    assert ranked_epochs(HISTORY, "valid", "loss", "min") == [2, 4, 3, 1]
    assert ranked_epochs(HISTORY, "valid", "acc", "max") == [3, 2, 4, 1]
    assert ranked_epochs(HISTORY, "valid", "cer", "min") == []


def test_average_links_and_integer_buffers(tmp_path, caplog):
    _write_epochs(tmp_path)
    caplog.set_level(logging.INFO)
    average_nbest_models(tmp_path, HISTORY, CRITERIA, [1, 2, 3])
    assert os.readlink(tmp_path / "valid.loss.best.pth") == "2epoch.pth"
    assert os.readlink(tmp_path / "valid.loss.ave_1best.pth") == "2epoch.pth"
    assert os.readlink(tmp_path / "valid.loss.ave.pth") == "valid.loss.ave_3best.pth"
    ave = torch.load(tmp_path / "valid.loss.ave_3best.pth")
    assert torch.allclose(ave["w"], torch.full((3,), (2 + 4 + 3) / 3))
    assert ave["count"].item() == 4  # integer: the most recent of epochs {2, 3, 4}
    assert ave["h"].dtype == torch.bfloat16 and ave["h"][0].item() == 3.0
    acc2 = torch.load(tmp_path / "valid.acc.ave_2best.pth")
    assert torch.allclose(acc2["w"], torch.full((3,), 2.5))
    assert not any("cer" in f for f in os.listdir(tmp_path))
    assert "valid.cer.min skipped" in caplog.text


def test_intermediate_average_has_suffix_and_no_links(tmp_path):
    _write_epochs(tmp_path)
    written = average_nbest_models(tmp_path, HISTORY, CRITERIA[:1], [2], suffix="till4epoch")
    assert [p.name for p in written] == ["valid.loss.ave_2best.till4epoch.pth"]
    assert not (tmp_path / "valid.loss.best.pth").exists()


def test_prune_keeps_union_of_nbest_and_latest(tmp_path):
    _write_epochs(tmp_path)
    keep = kept_epochs(HISTORY, CRITERIA, 1, latest=4)
    assert keep == {2, 3, 4}
    assert prune_epoch_files(tmp_path, keep) == [1]
    assert sorted(os.listdir(tmp_path)) == ["2epoch.pth", "3epoch.pth", "4epoch.pth"]
