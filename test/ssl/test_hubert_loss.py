import math

import pytest
import torch

from espnet2.ssl.loss.abs_loss import SSLForwardRecord
from espnet2.ssl.loss.hubert import HuBERTLoss


def _record(h, mask, labels, lengths, features=None):
    T = h.size(1)
    padding = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
    return SSLForwardRecord(hidden_states=[h], lengths=torch.tensor(lengths),
                            padding_mask=padding, mask=mask, labels=labels, features=features)


def _identity_ce_loss(num_classes=3):
    loss = HuBERTLoss(2, num_classes, final_dim=2, logit_temp=0.5)
    with torch.no_grad():
        loss.final_proj[0].weight.copy_(torch.eye(2))
        loss.final_proj[0].bias.zero_()
        loss.label_embeddings[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss.label_embeddings[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    return loss


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_ce_loss_matches_hand_computation():
    loss = _identity_ce_loss()
    # B=1, T=4: frames 0,1 masked; frame 2 unmasked; frame 3 padding
    h = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False, False]])
    labels = torch.tensor([[0, 2, 2, -1]])
    out = loss(_record(h, mask, labels, [3]))
    # logits = (E p + b) / 0.5: frame0 -> [4, 0, 2], frame1 -> [0, 2, 0]
    expected = (_ce([4.0, 0.0, 2.0], 0) + _ce([0.0, 2.0, 0.0], 2)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.weight.item() == 2
    assert out.stats["acc_m"].item() == pytest.approx(0.5)  # frame0 right, frame1 wrong
    # frame 2 logits [2, 2, 2]: argmax 0 != 2 -> acc_u 0 over ONE unmasked non-padding frame
    assert out.stats["count_u"].item() == 1
    assert out.stats["acc_u"].item() == 0.0


def test_cosine_loss_matches_hand_computation():
    loss = HuBERTLoss(2, 2, final_dim=2, loss_type="cosine", logit_temp=0.1)
    with torch.no_grad():
        loss.final_proj[0].weight.copy_(torch.eye(2))
        loss.final_proj[0].bias.zero_()
        loss.label_embeddings[0].copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    h = torch.tensor([[[3.0, 0.0], [0.0, 2.0]]])
    out = loss(_record(h, torch.tensor([[True, True]]), torch.tensor([[1, 1]]), [2]))
    c = 1 / math.sqrt(2)
    expected = (_ce([10.0, 10 * c], 1) + _ce([0.0, 10 * c], 1)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.stats["acc_m"].item() == pytest.approx(0.5)


def test_unmasked_term_and_feature_penalty():
    h = torch.randn(2, 6, 2)
    mask = torch.tensor([[True, True, False, False, False, False]] * 2)
    labels = torch.randint(0, 3, (2, 6))
    feats = torch.full((2, 6, 3), 2.0)
    feats[1, 5] = 100.0  # padding frame: excluded from the penalty
    rec = _record(h, mask, labels, [6, 5], features=feats)
    base = _identity_ce_loss()
    both = _identity_ce_loss()
    both.skip_nomask, both.pred_nomask_weight, both.feature_pen_weight = False, 0.5, 10.0
    out_b, out_2 = base(rec), both(rec)
    sel_u = ~mask & ~rec.padding_mask
    z = (h @ base.label_embeddings[0].weight.t().detach() + base.label_embeddings[0].bias) / 0.5
    ce_u = torch.nn.functional.cross_entropy(z[sel_u], labels[sel_u], reduction="sum")
    expected = out_b.loss + 0.5 * ce_u / 4 + 10.0 * 4.0
    assert out_2.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out_2.stats["features_pen"].item() == pytest.approx(4.0)
    assert out_2.stats["count_u"].item() == 7


def test_ignored_labels_and_zero_masked_frames():
    loss = HuBERTLoss(4, 5, final_dim=3)
    h = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :2] = True
    labels = torch.randint(0, 5, (2, 5))
    labels[0, :2] = -1  # the only masked frames carry no label
    out = loss(_record(h, mask, labels, [5, 5]))
    assert out.weight.item() == 0 and out.loss.item() == 0.0
    assert out.stats["acc_m"].item() == 0.0 and torch.isfinite(out.stats["acc_u"])
    out.loss.backward()
    assert torch.isfinite(h.grad).all()


def test_forward_backward_and_multi_layer_stats():
    loss = HuBERTLoss(4, 5, final_dim=3, layers=[0, -1], loss_weights=[0.5, 1.0])
    hs = [torch.randn(2, 6, 4, requires_grad=True) for _ in range(3)]
    mask = torch.rand(2, 6) < 0.5
    mask[:, 0] = True
    rec = SSLForwardRecord(hidden_states=hs, lengths=torch.tensor([6, 6]),
                           padding_mask=torch.zeros(2, 6, dtype=torch.bool), mask=mask,
                           labels=torch.randint(0, 5, (2, 6)))
    out = loss(rec)
    out.loss.backward()
    assert {"loss_0", "loss_2", "acc_m_0", "acc_u_2", "count_m_0"} <= set(out.stats)
    assert hs[0].grad.abs().sum() > 0 and hs[2].grad.abs().sum() > 0
    assert hs[1].grad is None
    expected = 0.5 * out.stats["loss_0"] + out.stats["loss_2"]
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for p in loss.parameters():
        assert p.grad is not None


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="loss_weights.*skip_nomask"):
        HuBERTLoss(4, 5, 3, layers=[-1, -2], loss_weights=[1.0], pred_nomask_weight=1.0)
