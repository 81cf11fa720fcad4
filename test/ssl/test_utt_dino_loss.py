"""Utterance-level DINO loss: pooling, the formula, centring, the teacher head, learning."""

import pytest
import torch

from espnet2.eval.pooling import masked_mean
from espnet2.ssl.loss.abs_loss import SSLForwardRecord
from espnet2.ssl.loss.utt_dino import UtteranceDINOLoss


def _record(B=3, T=10, D=8, lengths=(10, 7, 4), seed=0, layers=2):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    padding = torch.arange(T)[None, :] >= lengths[:, None]
    return SSLForwardRecord(
        hidden_states=[torch.randn(B, T, D, generator=g).requires_grad_() for _ in range(layers)],
        lengths=lengths, padding_mask=padding,
        teacher_hidden_states=[torch.randn(B, T, D, generator=g) for _ in range(layers)],
    )


def _loss(**kw):
    torch.manual_seed(0)
    return UtteranceDINOLoss(8, **{"num_prototypes": 6, "hidden_dim": 16, "bottleneck_dim": 4,
                                   **kw})


def test_loss_is_cross_entropy_to_the_centred_sharpened_teacher():
    rec = _record()
    loss = _loss(student_temp=0.2, teacher_temp=0.05)
    loss.center.copy_(torch.linspace(-1, 1, 6))
    loss.eval()  # no centre update, so the centre used is the one set here
    out = loss(rec)
    s = masked_mean(rec.hidden_states[-1], rec.lengths)
    t = masked_mean(rec.teacher_hidden_states[-1], rec.lengths)
    p_t = torch.softmax((loss.teacher_head(t) - loss.center) / 0.05, -1)
    logp_s = torch.log_softmax(loss.head(s) / 0.2, -1)
    torch.testing.assert_close(out.loss, -(p_t * logp_s).sum(-1).mean())
    assert out.weight.item() == 3
    assert 1.0 <= out.stats["teacher_ppl"].item() <= 6.0
    out.loss.backward()
    assert rec.hidden_states[-1].grad.abs().sum() > 0  # the student learns
    assert rec.hidden_states[0].grad is None  # only the configured layer
    assert all(p.grad is None for p in loss.teacher_head.parameters())  # the teacher does not


def test_padding_frames_do_not_change_the_loss():
    rec = _record()
    loss = _loss().eval()
    base = loss(rec).loss
    for states in (rec.hidden_states, rec.teacher_hidden_states):
        with torch.no_grad():
            states[-1][rec.padding_mask] = 50.0
    torch.testing.assert_close(loss(rec).loss, base)


def test_centre_is_an_ema_of_teacher_logits_in_training_only():
    rec = _record()
    loss = _loss(center_momentum=0.75)
    t = masked_mean(rec.teacher_hidden_states[-1], rec.lengths)
    z = loss.teacher_head(t).detach()
    loss.eval()
    loss(rec)
    assert torch.count_nonzero(loss.center) == 0  # validation leaves the centre alone
    loss.train()
    loss(rec)
    torch.testing.assert_close(loss.center, 0.25 * z.mean(0))
    loss(rec)
    torch.testing.assert_close(loss.center, 0.75 * 0.25 * z.mean(0) + 0.25 * z.mean(0))


def test_teacher_head_follows_the_student_head_by_its_decay():
    loss = _loss(head_decay=0.9)
    before = {k: v.clone() for k, v in loss.teacher_head.model.state_dict().items()}
    with torch.no_grad():
        for p in loss.head.parameters():
            if p.requires_grad:
                p.add_(1.0)
    loss.after_optimizer_step(1)
    student = loss.head.state_dict()
    for k, v in loss.teacher_head.model.state_dict().items():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * student[k])
    trainable = {n for n, p in loss.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    assert "head.prototypes.parametrizations.weight.original0" not in trainable  # |w_k| = 1


def test_learns_to_agree_with_a_clustered_teacher_without_collapse():
    """Teacher utterances come from 4 well-separated groups; the student sees them with noise.
    Training the student head must raise agreement and keep the teacher using >1 prototype."""
    torch.manual_seed(0)
    D, B, T = 8, 32, 6
    centres = torch.randn(4, D) * 3
    loss = UtteranceDINOLoss(D, num_prototypes=8, hidden_dim=32, bottleneck_dim=8,
                             head_decay=0.9)
    opt = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=1e-2)
    pad = torch.zeros(B, T, dtype=torch.bool)

    def batch():
        group = torch.randint(0, 4, (B,))
        clean = centres[group][:, None, :].expand(B, T, D)
        noisy = clean + 0.5 * torch.randn(B, T, D)
        return SSLForwardRecord(hidden_states=[noisy], lengths=torch.full((B,), T),
                                padding_mask=pad, teacher_hidden_states=[clean])

    first = loss(batch())
    for step in range(1, 301):
        out = loss(batch())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        loss.after_optimizer_step(step)
    last = [loss(batch()) for _ in range(5)]
    assert sum(o.loss.item() for o in last) / 5 < 0.5 * first.loss.item()
    assert min(o.stats["agree"].item() for o in last) > 0.9
    assert max(o.stats["teacher_ppl"].item() for o in last) > 1.5  # not one prototype for all


def test_bad_options_and_layers_are_refused():
    with pytest.raises(ValueError, match="num_prototypes=1"):
        UtteranceDINOLoss(8, num_prototypes=1)
    with pytest.raises(ValueError, match="teacher_temp=0"):
        UtteranceDINOLoss(8, teacher_temp=0)
    with pytest.raises(ValueError, match=r"head_decay=1.0 \(must be in \[0, 1\)\)"):
        UtteranceDINOLoss(8, head_decay=1.0)
    assert UtteranceDINOLoss(8, layer=-2).layer_problems(2) == []
    assert "encoder has 2 blocks" in UtteranceDINOLoss(8, layer=2).layer_problems(2)[0]
    rec = _record()
    rec.teacher_hidden_states = None
    with pytest.raises(ValueError, match="EMA teacher"):
        _loss()(rec)


def test_teacher_head_starts_from_the_student_head_after_reinit_but_not_after_resume():
    loss = _loss()
    with torch.no_grad():  # as --init does after the loss was built
        for p in loss.head.parameters():
            p.normal_()
    loss.eval()
    loss(_record())  # validation does not sync
    assert not torch.equal(loss.teacher_head.model.mlp[0].weight, loss.head.mlp[0].weight)
    loss.train()
    loss(_record())
    for k, v in loss.teacher_head.model.state_dict().items():
        torch.testing.assert_close(v, loss.head.state_dict()[k])
    # a resumed run keeps its checkpointed teacher head
    with torch.no_grad():
        loss.teacher_head.model.mlp[0].weight.add_(1.0)
    saved = {k: v.clone() for k, v in loss.state_dict().items()}
    resumed = _loss()
    resumed.load_state_dict(saved)
    resumed.train()
    resumed(_record())
    torch.testing.assert_close(resumed.teacher_head.model.mlp[0].weight,
                               saved["teacher_head.model.mlp.0.weight"])


def _ddp_worker(out_dir):
    from espnet2.train.distributed import destroy, init_distributed

    torch.set_num_threads(1)
    info = init_distributed(ngpu=0, timeout_s=60)
    try:
        loss = _loss(center_momentum=0.5).train()
        rec = _record(B=2 + info.rank, lengths=(10, 6, 3)[: 2 + info.rank], seed=info.rank)
        loss(rec)
        torch.save(loss.center.clone(), f"{out_dir}/center{info.rank}.pt")
    finally:
        destroy()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_centre_is_averaged_over_every_ranks_utterances(tmp_path):
    """Under DDP the centre moves to the mean teacher logit of all ranks' utterances (2 + 3
    here), the same on every rank, as one process seeing the whole batch would."""
    from espnet2.train.distributed import spawn_workers

    spawn_workers(_ddp_worker, 2, str(tmp_path))
    c0, c1 = (torch.load(tmp_path / f"center{r}.pt") for r in (0, 1))
    torch.testing.assert_close(c0, c1)
    loss = _loss()
    z = []
    for rank in (0, 1):
        rec = _record(B=2 + rank, lengths=(10, 6, 3)[: 2 + rank], seed=rank)
        z.append(loss.teacher_head(masked_mean(rec.teacher_hidden_states[-1], rec.lengths)))
    torch.testing.assert_close(c0, 0.5 * torch.cat(z).mean(0).detach())
