"""data2vec loss: targets, the regression formula, masking, and learning on a toy problem."""

import logging

import pytest
import torch
import torch.nn.functional as F

from espnet2.ssl.loss.abs_loss import SSLForwardRecord
from espnet2.ssl.loss.data2vec import Data2VecLoss
from espnet2.ssl.loss.dinosr import masked_instance_norm


def _record(B=2, T=12, D=8, layers=3, lengths=(12, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    padding = torch.arange(T)[None, :] >= lengths[:, None]
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 2:7] = True
    return SSLForwardRecord(
        hidden_states=[torch.randn(B, T, D, generator=g).requires_grad_()],
        lengths=lengths, padding_mask=padding, mask=mask,
        teacher_hidden_states=[torch.randn(B, T, D, generator=g) for _ in range(layers)],
    )


def test_targets_average_the_normalised_top_k_teacher_layers():
    rec = _record()
    loss = Data2VecLoss(8, average_top_k_layers=2)
    valid = ~rec.padding_mask
    ref = (masked_instance_norm(rec.teacher_hidden_states[1], valid)
           + masked_instance_norm(rec.teacher_hidden_states[2], valid)) / 2
    torch.testing.assert_close(loss.targets(rec), ref)
    raw = Data2VecLoss(8, average_top_k_layers=1, instance_norm_target_layer=False)
    torch.testing.assert_close(raw.targets(rec), rec.teacher_hidden_states[-1])


def test_loss_is_the_scaled_squared_error_per_masked_frame():
    rec = _record()
    loss = Data2VecLoss(8, average_top_k_layers=3)
    out = loss(rec)
    h, m = rec.hidden_states[-1], rec.mask
    y = loss.targets(rec)[m]
    pred = loss.head(h[m])
    n_m = int(m.sum())
    ref = ((pred - y) ** 2).sum() / 8 ** 0.5 / n_m
    torch.testing.assert_close(out.loss, ref)
    assert out.weight.item() == n_m and out.stats["count_m"].item() == n_m
    # smooth L1 with beta and an explicit scale
    sl1 = Data2VecLoss(8, average_top_k_layers=3, loss_beta=0.5, loss_scale=2.0)
    sl1.head.load_state_dict(loss.head.state_dict())
    ref = F.smooth_l1_loss(pred, y, reduction="sum", beta=0.5) * 2.0 / n_m
    torch.testing.assert_close(sl1(rec).loss, ref)


def test_only_masked_frames_count_unless_unmasked_weight_is_set():
    rec = _record()
    loss = Data2VecLoss(8, average_top_k_layers=2)
    base = loss(rec).loss
    rec2 = _record()
    changed = rec2.hidden_states[-1].detach().clone()
    changed[~rec2.mask] += 5.0  # unmasked frames and padding: no effect on the loss
    rec2.hidden_states = [changed.requires_grad_()]
    torch.testing.assert_close(loss(rec2).loss, base)
    both = Data2VecLoss(8, average_top_k_layers=2, pred_nomask_weight=0.5)
    both.head.load_state_dict(loss.head.state_dict())
    out = both(rec)
    h, y = rec.hidden_states[-1], both.targets(rec)
    unmasked = ~rec.padding_mask & ~rec.mask
    sum_u = ((both.head(h[unmasked]) - y[unmasked]) ** 2).sum() / 8 ** 0.5
    n_m = int(rec.mask.sum())
    torch.testing.assert_close(out.loss, base + 0.5 * sum_u / n_m)
    assert out.stats["count_u"].item() == int(unmasked.sum())
    assert out.weight.item() == n_m  # weight stays N_m (HuBERT's normalisation)


def test_targets_carry_no_gradient_and_padding_does_not_change_them():
    rec = _record()
    rec.teacher_hidden_states = [h.requires_grad_() for h in rec.teacher_hidden_states]
    out = Data2VecLoss(8, average_top_k_layers=2)(rec)
    out.loss.backward()
    assert all(h.grad is None for h in rec.teacher_hidden_states)
    assert rec.hidden_states[-1].grad is not None
    # padded teacher frames hold garbage: same targets on the valid frames
    a = _record(seed=3)
    b = _record(seed=3)
    b.teacher_hidden_states[-1][1, 9:] = 1e4
    la = Data2VecLoss(8, average_top_k_layers=1)
    torch.testing.assert_close(la.targets(a)[~a.padding_mask], la.targets(b)[~b.padding_mask])


def test_bad_options_and_too_few_teacher_layers_are_named():
    with pytest.raises(ValueError, match=r"average_top_k_layers=0.*loss_beta=-1"):
        Data2VecLoss(8, average_top_k_layers=0, loss_beta=-1)
    with pytest.raises(ValueError, match=r"needs >= 4 teacher layers, got 3.*average_top_k"):
        Data2VecLoss(8, average_top_k_layers=4)(_record())
    rec = _record()
    rec.mask = None
    with pytest.raises(ValueError, match="masking util"):
        Data2VecLoss(8, average_top_k_layers=1)(rec)


def test_head_learns_to_regress_a_linear_teacher():
    torch.manual_seed(0)
    W = torch.randn(4, 4)
    loss = Data2VecLoss(4, average_top_k_layers=1, instance_norm_target_layer=False)
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    first = None
    for _ in range(200):
        h = torch.randn(2, 10, 4)
        rec = SSLForwardRecord(hidden_states=[h], lengths=torch.tensor([10, 10]),
                               padding_mask=torch.zeros(2, 10, dtype=torch.bool),
                               mask=torch.ones(2, 10, dtype=torch.bool),
                               teacher_hidden_states=[h @ W])
        out = loss(rec)
        first = out.loss.item() if first is None else first
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.01 * first


def test_collapse_warns_once_after_the_check_step(caplog):
    loss = Data2VecLoss(8, average_top_k_layers=1, instance_norm_target_layer=False,
                        collapse_check_after=200)
    rec = _record()
    rec.teacher_hidden_states = [torch.zeros_like(h) for h in rec.teacher_hidden_states]
    loss.train()
    loss(rec)  # constant targets: variance 0
    with caplog.at_level(logging.WARNING, logger="espnet2.ssl.loss.data2vec"):
        loss.after_optimizer_step(100)  # before collapse_check_after: no check
        assert not caplog.records
        loss.after_optimizer_step(200)
        loss.after_optimizer_step(300)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "update 200: target variance 0" in msgs[0]
    healthy = Data2VecLoss(8, average_top_k_layers=1, collapse_check_after=0)
    healthy.train()
    healthy(_record())  # normalised targets: variance ~1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="espnet2.ssl.loss.data2vec"):
        healthy.after_optimizer_step(100)
    assert not caplog.records
