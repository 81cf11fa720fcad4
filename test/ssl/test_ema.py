import pytest
import torch

from espnet2.ssl.utils.ema import EMATeacher
from espnet2.testing.tiny import TinyEncoder, tiny_batch, tiny_model


def test_decay_schedule_values():
    ema = EMATeacher(TinyEncoder(), ema_decay=0.999, ema_end_decay=0.9999,
                     ema_anneal_end_step=30000, freeze_teacher_step=200001)
    assert ema.decay_at(0) == pytest.approx(0.999)
    assert ema.decay_at(15000) == pytest.approx(0.99945)
    assert ema.decay_at(30000) == pytest.approx(0.9999)
    assert ema.decay_at(100000) == pytest.approx(0.9999)
    assert ema.decay_at(200000) == pytest.approx(0.9999)
    assert ema.decay_at(200001) == 1.0
    assert ema.decay_at(300000) == 1.0
    assert EMATeacher(TinyEncoder(), ema_anneal_end_step=0).decay_at(5) == pytest.approx(0.9999)


def test_teacher_is_frozen_fp32_eval_copy():
    student = TinyEncoder()
    ema = EMATeacher(student)
    assert all(not p.requires_grad for p in ema.parameters())
    for (n_s, p_s), (n_t, p_t) in zip(student.named_parameters(), ema.model.named_parameters()):
        assert n_s == n_t and torch.equal(p_s, p_t) and p_t.data_ptr() != p_s.data_ptr()
    ema.train()
    assert not ema.model.training
    ema.to(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in ema.model.parameters())


def _perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


def test_update_arithmetic_and_skip_keys():
    student = TinyEncoder()
    ema = EMATeacher(student, ema_decay=0.9, ema_end_decay=0.9, ema_anneal_end_step=0)
    before = {n: p.clone() for n, p in ema.model.named_parameters()}
    _perturb(student)
    student.calls.fill_(7)
    assert ema.step(student, 1) == pytest.approx(0.9)
    for name, p_s in student.named_parameters():
        p_t = dict(ema.model.named_parameters())[name]
        if name.startswith("pos_conv."):
            assert torch.equal(p_t, p_s), name  # copied, not averaged
        else:
            torch.testing.assert_close(p_t, 0.9 * before[name] + 0.1 * p_s)
    assert int(ema.model.calls) == 7  # buffers copied


def test_frozen_teacher_does_not_move():
    student = TinyEncoder()
    ema = EMATeacher(student, freeze_teacher_step=5)
    before = {n: p.clone() for n, p in ema.model.named_parameters()}
    _perturb(student)
    assert ema.step(student, 5) == 1.0
    for name, p in ema.model.named_parameters():
        if not name.startswith("pos_conv."):
            assert torch.equal(p, before[name])


def test_state_dict_holds_teacher_but_optimizer_filter_excludes_it():
    model = tiny_model(("dinosr",))
    keys = model.state_dict().keys()
    assert any(k.startswith("ema.model.encoders.0.") for k in keys)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for p in model.ema.parameters())
    assert all(id(p) in trainable for p in model.encoder.parameters())


def test_teacher_synced_with_student_at_first_forward():
    model = tiny_model(("dinosr",))
    _perturb(model.encoder)  # e.g. `--init` applied after build_model
    model(**tiny_batch())
    for (_, p_s), (_, p_t) in zip(model.encoder.named_parameters(),
                                  model.ema.model.named_parameters()):
        assert torch.equal(p_s, p_t)
    # a resumed model must not be re-synced: the flag travels in the state dict
    other = tiny_model(("dinosr",))
    other.load_state_dict(model.state_dict())
    assert other.ema.is_synced()


def test_exactly_one_update_per_optimizer_step():
    """Gradient accumulation: two forwards, one step -> one EMA update."""
    model = tiny_model(("dinosr",), ema_conf={"ema_decay": 0.5, "ema_end_decay": 0.5})
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        loss, _, _ = model(**tiny_batch())
        loss.backward()
    teacher_before = {n: p.clone() for n, p in model.ema.model.named_parameters()}
    opt.step()
    model.after_optimizer_step(1)
    for name, p_s in model.encoder.named_parameters():
        p_t = dict(model.ema.model.named_parameters())[name]
        expected = p_s if name.startswith("pos_conv.") else 0.5 * teacher_before[name] + 0.5 * p_s
        torch.testing.assert_close(p_t, expected)
    _, stats, _ = model(**tiny_batch())
    assert float(stats["ema_decay"]) == pytest.approx(0.5)
