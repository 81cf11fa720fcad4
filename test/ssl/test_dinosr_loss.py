import logging

import pytest
import torch
import torch.nn.functional as F

from espnet2.ssl.loss.abs_loss import SSLForwardRecord
from espnet2.ssl.loss.dinosr import DinoSRLoss, masked_instance_norm, perplexity


def _record(B=2, T=12, D=8, layers=3, lengths=(12, 9)):
    lengths = torch.tensor(lengths)
    padding = torch.arange(T)[None, :] >= lengths[:, None]
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 2:7] = True
    return SSLForwardRecord(
        hidden_states=[torch.randn(B, T, D, requires_grad=True)],
        lengths=lengths, padding_mask=padding, mask=mask,
        teacher_hidden_states=[torch.randn(B, T, D) for _ in range(layers)],
    )


def test_masked_instance_norm_ignores_padding():
    x = torch.randn(1, 10, 3)
    ref = F.instance_norm(x[:, :7].transpose(1, 2)).transpose(1, 2)
    padded = x.clone()
    padded[:, 7:] = 1e3
    valid = torch.arange(10)[None, :] < 7
    out = masked_instance_norm(padded, valid)
    torch.testing.assert_close(out[:, :7], ref, atol=1e-5, rtol=1e-5)
    assert (out[:, 7:] == 0).all()


def test_codebook_update_hand_example():
    loss = DinoSRLoss(2, num_codebooks=1, codebook_size=2, codebook_init_decay=0.5,
                      codebook_end_decay=0.5)
    with torch.no_grad():
        loss.codebook_sums.copy_(torch.tensor([[[2.0, 0.0], [0.0, 3.0]]]))  # (K=1, V=2, D=2)
        loss.codebook_counts.copy_(torch.tensor([[2.0, 1.0]]))  # centroids (1,0), (0,3)
    t = torch.tensor([[[1.0, 0.5], [0.8, -0.2], [3.0, 0.0]]])  # all nearest to codeword 0
    codes = loss.assign(t)
    assert codes.tolist() == [[0, 0, 0]]
    m = loss.update_codebooks(t, codes, 0.5)
    assert m.tolist() == [[3.0, 0.0]]
    # used codeword: n = 0.5*2 + 0.5*3 = 2.5; S = 0.5*(2,0) + 0.5*(4.8,0.3) = (3.4, 0.15)
    torch.testing.assert_close(loss.codebook_counts, torch.tensor([[2.5, 1.0]]))
    torch.testing.assert_close(loss.codebook_sums[0, 0], torch.tensor([3.4, 0.15]))
    torch.testing.assert_close(loss.codebook_sums[0, 1], torch.tensor([0.0, 3.0]))  # unused
    assert loss.assign(torch.tensor([[[0.1, 2.0]]])).tolist() == [[1]]


def test_init_codebooks_are_normalised_fp32_buffers():
    loss = DinoSRLoss(8, num_codebooks=2, codebook_size=16)
    sd = loss.state_dict()
    assert sd["codebook_sums"].dtype == torch.float32 and sd["codebook_sums"].shape == (2, 16, 8)
    assert sd["codebook_counts"].dtype == torch.float32
    assert torch.equal(sd["codebook_counts"], torch.ones(2, 16))
    # instance-normalised over the codewords: zero mean, unit variance per (codebook, dim)
    torch.testing.assert_close(sd["codebook_sums"].mean(1), torch.zeros(2, 8), atol=1e-5,
                               rtol=0)
    assert not any(n.startswith("codebook") for n, _ in loss.named_parameters())
    loss.to(torch.bfloat16)
    assert loss.codebook_sums.dtype == torch.float32
    assert loss.heads[0].weight.dtype == torch.bfloat16


def test_forward_backward_updates_codebooks_only_in_training():
    loss = DinoSRLoss(8, num_codebooks=2, codebook_size=4)
    rec = _record()
    before = loss.codebook_sums.clone()
    out = loss(rec)
    out.loss.backward()
    assert out.weight.item() == 10
    assert rec.hidden_states[0].grad.abs().sum() > 0
    assert all(h.weight.grad is not None for h in loss.heads)
    assert not torch.equal(loss.codebook_sums, before)
    assert 1.0 <= out.stats["target_ppl"].item() <= 4.0
    assert 0.0 < out.stats["codebook_usage"].item() <= 1.0
    assert out.stats["codebook_decay"].item() == pytest.approx(0.9)
    loss.eval()
    frozen = loss.codebook_sums.clone()
    loss(_record())
    assert torch.equal(loss.codebook_sums, frozen)


def test_loss_is_mean_ce_over_codebooks_and_frames():
    loss = DinoSRLoss(8, num_codebooks=2, codebook_size=4).eval()
    rec = _record()
    out = loss(rec)
    x = rec.hidden_states[0][rec.mask]
    targets = loss.make_targets(rec)
    codes = loss.assign(targets)
    expected = sum(F.cross_entropy(loss.heads[k](x), codes[k]) for k in range(2)) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_codebook_math_stays_fp32_under_autocast():
    loss = DinoSRLoss(8, num_codebooks=2, codebook_size=4)
    rec = _record()
    rec.teacher_hidden_states = [h.bfloat16() for h in rec.teacher_hidden_states]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(rec)
    assert loss.codebook_sums.dtype == torch.float32
    assert torch.isfinite(out.loss)


def test_decay_schedule_and_resume():
    loss = DinoSRLoss(8, num_codebooks=1, codebook_size=4, codebook_init_decay=0.9,
                      codebook_end_decay=0.99, codebook_end_decay_step=100)
    assert loss.codebook_decay == pytest.approx(0.9)
    loss.after_optimizer_step(50)
    assert loss.codebook_decay == pytest.approx(0.945)
    other = DinoSRLoss(8, num_codebooks=1, codebook_size=4, codebook_init_decay=0.9,
                       codebook_end_decay=0.99, codebook_end_decay_step=100)
    other.load_state_dict(loss.state_dict())
    assert other.codebook_decay == pytest.approx(0.945)
    other.after_optimizer_step(150)
    assert other.codebook_decay == pytest.approx(0.99)


def test_collapse_warning_logged_once(caplog):
    loss = DinoSRLoss(8, num_codebooks=1, codebook_size=4)
    with torch.no_grad():  # one codeword far closer than the others -> a single target code
        loss.codebook_sums.copy_(torch.zeros(1, 4, 8))
        loss.codebook_sums[0, 1:] = 1e4
    with caplog.at_level(logging.WARNING):
        loss(_record(layers=1))
        loss.after_optimizer_step(100)
        loss(_record(layers=1))
        loss.after_optimizer_step(200)
    assert sum("collapsed" in r.message for r in caplog.records) == 1


def test_perplexity_bounds():
    uniform = torch.full((1, 5, 4), 0.25)
    assert perplexity(uniform).item() == pytest.approx(4.0)
    assert perplexity(torch.zeros(1, 0, 4)).item() == pytest.approx(1.0)


def test_too_few_teacher_layers_is_an_error():
    with pytest.raises(ValueError, match="teacher layers"):
        DinoSRLoss(8, num_codebooks=4, codebook_size=4)(_record(layers=2))


def _ddp_worker(rank, world, init_file, targets, result_file):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    torch.manual_seed(0)
    loss = DinoSRLoss(2, num_codebooks=1, codebook_size=3, codebook_init_decay=0.5,
                      codebook_end_decay=0.5)
    mine = targets[:, rank::world]  # each rank sees different frames
    loss.update_codebooks(mine, loss.assign(mine), 0.5)
    torch.save(loss.state_dict(), f"{result_file}.{rank}")
    torch.distributed.destroy_process_group()


def test_codebook_update_is_all_reduced_across_ranks(tmp_path):
    targets = torch.randn(1, 10, 2)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, tmp_path / "init", targets,
                                                    tmp_path / "sd"), nprocs=2)
    torch.manual_seed(0)
    single = DinoSRLoss(2, num_codebooks=1, codebook_size=3, codebook_init_decay=0.5,
                        codebook_end_decay=0.5)
    single.update_codebooks(targets, single.assign(targets), 0.5)
    for rank in range(2):
        sd = torch.load(tmp_path / f"sd.{rank}")
        torch.testing.assert_close(sd["codebook_sums"], single.codebook_sums)
        torch.testing.assert_close(sd["codebook_counts"], single.codebook_counts)


def test_pred_nomask_weight_adds_unmasked_frames_with_the_formula():
    """L(α_u) = [Σ_M CE + α_u Σ_U CE] / (K N_m): checked against a hand computation with the
    same heads and centroids; the codebooks are updated by the masked frames only."""
    torch.manual_seed(0)
    rec = _record()
    ref = DinoSRLoss(8, num_codebooks=2, codebook_size=4).eval()
    new = DinoSRLoss(8, num_codebooks=2, codebook_size=4, pred_nomask_weight=0.5)
    new.load_state_dict(ref.state_dict())
    new.eval()
    base, out = ref(rec), new(rec)
    unmasked = ~rec.padding_mask & ~rec.mask
    n_m, n_u = int(rec.mask.sum()), int(unmasked.sum())
    assert n_u == 12 + 9 - 2 * 5
    codes = ref.assign(ref.make_targets(rec, unmasked))
    x = rec.hidden_states[-1][unmasked]
    ce_u = sum(F.cross_entropy(h(x), c, reduction="sum") for h, c in zip(ref.heads, codes))
    expected = base.loss + 0.5 * ce_u / (2 * n_m)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.stats["loss_u"], ce_u / (2 * n_u))
    assert out.weight == n_m and out.stats["count_u"] == n_u
    # training: the unmasked frames leave the codebooks exactly as the reference leaves them
    ref.train(), new.train()
    ref(rec), new(rec)
    torch.testing.assert_close(new.codebook_sums, ref.codebook_sums)
    torch.testing.assert_close(new.codebook_counts, ref.codebook_counts)
    out.loss.backward()
    assert rec.hidden_states[-1].grad[unmasked].abs().sum() > 0  # unmasked frames now learn
    with pytest.raises(ValueError, match="pred_nomask_weight"):
        DinoSRLoss(8, pred_nomask_weight=-1.0)


def test_dead_codewords_are_reseeded_at_batch_targets():
    """Usage EMA u ← β u + (1 − β) m / Σm; u < r / V re-seeds the codeword at a batch target."""
    loss = DinoSRLoss(2, num_codebooks=1, codebook_size=4, codebook_init_decay=0.5,
                      codebook_end_decay=0.5, codebook_reset_usage=0.5,
                      codebook_usage_decay=0.5)
    with torch.no_grad():  # codeword 0 at the data, 1-3 far away: never chosen
        loss.codebook_sums.copy_(torch.tensor([[[0.0, 0.0], [50.0, 50.0], [60.0, 60.0],
                                                [70.0, 70.0]]]))
    t = torch.tensor([[[0.1, 0.0], [0.0, 0.2], [-0.1, 0.1]]])
    torch.manual_seed(0)
    counts = loss.update_codebooks(t, loss.assign(t), 0.5)
    assert counts.tolist() == [[3.0, 0.0, 0.0, 0.0]]
    # u = 0.5 * 0.25 + 0.5 * share = [0.625, 0.125, 0.125, 0.125]; r / V = 0.125: not below
    torch.testing.assert_close(loss.codebook_usage, torch.tensor([[0.625, 0.125, 0.125, 0.125]]))
    assert loss._last_resets == 0 and loss.codebook_sums[0, 1].tolist() == [50.0, 50.0]
    loss._step = 50  # between checks (each costs a host sync): the usage EMA still moves
    loss.update_codebooks(t, loss.assign(t), 0.5)  # u = 0.0625 < 0.125, but no check yet
    assert loss._last_resets == 0 and loss.codebook_sums[0, 1].tolist() == [50.0, 50.0]
    torch.testing.assert_close(loss.codebook_usage[0, 1:], torch.full((3,), 0.0625))
    loss._step = 100  # u = 0.03125: the check at every 100th update re-seeds codewords 1-3
    loss.update_codebooks(t, loss.assign(t), 0.5)
    assert loss._last_resets == 3
    seeded = loss.centroids()[0, 1:]
    assert all(any(torch.equal(c, x) for x in t[0]) for c in seeded)  # each is a batch target
    assert loss.codebook_counts[0, 1:].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(loss.codebook_usage[0, 1:], torch.full((3,), 0.25))
    assert loss.codebook_usage.dtype == torch.float32 and "codebook_usage" in loss.state_dict()
    assert "codebook_usage" not in DinoSRLoss(2, codebook_size=4).state_dict()  # off: as before
    rec = _record()
    on = DinoSRLoss(8, num_codebooks=2, codebook_size=4, codebook_reset_usage=0.1)
    assert "codebook_resets" in on(rec).stats and "codebook_resets" not in on.eval()(rec).stats


def _ddp_reset_worker(rank, world, init_file, targets, result_file):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    torch.manual_seed(rank)  # different random picks per rank: rank 0's must win
    loss = DinoSRLoss(2, num_codebooks=1, codebook_size=4, codebook_init_decay=0.5,
                      codebook_end_decay=0.5, codebook_reset_usage=0.9,
                      codebook_usage_decay=0.0)
    with torch.no_grad():
        loss.codebook_sums.copy_(torch.tensor([[[0.0, 0.0], [50.0, 50.0], [60.0, 60.0],
                                                [70.0, 70.0]]]))
    mine = targets[:, rank::world]
    loss.update_codebooks(mine, loss.assign(mine), 0.5)
    torch.save(loss.state_dict(), f"{result_file}.{rank}")
    torch.distributed.destroy_process_group()


def test_codeword_reset_is_identical_on_every_rank(tmp_path):
    targets = torch.randn(1, 10, 2) * 0.1
    torch.multiprocessing.spawn(_ddp_reset_worker, args=(2, tmp_path / "init", targets,
                                                          tmp_path / "sd"), nprocs=2)
    sd = [torch.load(tmp_path / f"sd.{rank}") for rank in range(2)]
    for key in ("codebook_sums", "codebook_counts", "codebook_usage"):
        torch.testing.assert_close(sd[0][key], sd[1][key])
    rank0 = targets[0, 0::2]  # the re-seeded codewords are rank 0's targets
    assert all(any(torch.equal(c, x) for x in rank0) for c in sd[0]["codebook_sums"][0, 1:])
