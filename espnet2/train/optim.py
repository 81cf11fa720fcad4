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
