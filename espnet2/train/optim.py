"""Optimizer factory: ``--optim`` name + ``--optim_conf`` kwargs -> a torch optimizer."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

logger = logging.getLogger(__name__)

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


#: Weight-norm directions ``v`` (``w = g * v / ||v||``): their scale is meaningless, and weight
#: decay on taps that get no gradient (e.g. a 128-tap positional conv on 20-frame clips) drives
#: ``||v||`` to 0 and the weight to 0/0 = NaN (seen after ~1000 steps on FSDD). Never decayed.
NO_DECAY_SUFFIXES = (".parametrizations.weight.original1",)


def param_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> list[dict]:
    """Trainable parameters in two groups: with weight decay, and without (weight-norm ``v``)."""
    decay, no_decay = [], []
    for name, p in named_params:
        if p.requires_grad:
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter] | Iterable[dict],
                    conf: dict | None = None) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (adam, adamw, sgd) over the trainable ``params``.

    Parameters with ``requires_grad=False`` (frozen parts, an EMA teacher kept as parameters)
    are dropped. The fused kernel is used on CUDA and CPU (one kernel for all parameters; on a
    CPU it makes the Adam step ~3x faster than foreach: bench/results/step_extra.md) unless
    ``conf`` sets ``fused`` or ``foreach``.
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    conf = dict(conf or {})
    groups = list(params)
    if groups and isinstance(groups[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        groups = [g for g in groups if g["params"]]
        flat = [p for g in groups for p in g["params"]]
    else:
        groups = flat = [p for p in groups if p.requires_grad]
    if not flat:
        raise ValueError(f"build_optimizer({name!r}): the model has no trainable parameters")
    fusable = all(p.device.type in ("cuda", "cpu") and p.is_floating_point() for p in flat)
    if "fused" not in conf and "foreach" not in conf and fusable:
        conf["fused"] = True
    try:
        return OPTIMIZERS[key](groups, **conf)
    except TypeError as e:
        raise ValueError(f"optim_conf for {name!r} is invalid: {e}") from None
