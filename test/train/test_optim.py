import torch

from espnet2.layers.conv_pos import ConvolutionalPositionalEmbedding
from espnet2.train.optim import build_optimizer, param_groups


def test_weight_norm_direction_is_never_decayed():
    """Taps of a long positional conv that see only padding get no gradient; with decay their
    weight-norm direction shrinks to 0 and the weight becomes 0/0 = NaN."""
    torch.manual_seed(0)
    pos = ConvolutionalPositionalEmbedding(8, kernel_size=16, groups=2)
    opt = build_optimizer(
        "adamw", param_groups(pos.named_parameters()), {"lr": 0.1, "weight_decay": 0.5}
    )
    x = torch.zeros(1, 40, 8)
    x[:, :2] = torch.randn(1, 2, 8)  # two frames of signal: most taps see only zeros
    for _ in range(300):
        opt.zero_grad()
        pos(x).pow(2).mean().backward()
        opt.step()
    assert torch.isfinite(pos(x)).all()
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in pos.named_parameters() if id(p) not in decayed}
    assert names == {"conv.parametrizations.weight.original1"}


def test_frozen_parameters_are_dropped():
    lin = torch.nn.Linear(2, 2)
    lin.bias.requires_grad_(False)
    opt = build_optimizer("adam", param_groups(lin.named_parameters()), {"lr": 0.1})
    assert [p for g in opt.param_groups for p in g["params"]] == [lin.weight]
