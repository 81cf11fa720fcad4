"""``--init_param`` and ``--freeze_param`` (ESPnet semantics)."""

from __future__ import annotations

import logging
from pathlib import Path

from espnet2.utils.config import ConfigError, suggestion

logger = logging.getLogger(__name__)


def parse_init_param(spec: str) -> tuple[str, str | None, str | None, list[str]]:
    """ESPnet ``path:src_key:dst_key:exclude1,exclude2`` (trailing fields optional)."""
    parts = spec.split(":")
    if len(parts) > 4:
        raise ConfigError(f"--init_param {spec!r}: expected path[:src_key[:dst_key[:exclude]]]")
    parts += [""] * (4 - len(parts))
    path, src, dst, excl = parts
    return path, src or None, dst or None, [e for e in excl.split(",") if e]


def load_init_param(model, spec: str) -> None:
    """Copy (a sub-tree of) a checkpoint into ``model`` (ESPnet ``--init_param`` semantics)."""
    import torch

    path, src, dst, exclude = parse_init_param(spec)
    if not Path(path).is_file():
        raise ConfigError(f"--init_param {spec!r}: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint.pth
    if src:
        state = {k[len(src) + 1:]: v for k, v in state.items() if k.startswith(src + ".")}
        if not state:
            raise ConfigError(f"--init_param {spec!r}: no parameter starts with '{src}.' in {path}")
    state = {k: v for k, v in state.items()
             if not any(k == e or k.startswith(e + ".") for e in exclude)}
    target = model.get_submodule(dst) if dst else model
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected:
        raise ConfigError(f"--init_param {spec!r}: keys not in the model: {unexpected[:5]}"
                          f"{' ...' if len(unexpected) > 5 else ''}")
    logger.info("init_param %s: loaded %d tensors (%d model tensors not in it)", spec,
                len(state), len(missing))


def freeze_parameters(model, prefixes: list[str]) -> None:
    """``requires_grad=False`` for parameters named ``p`` or ``p.*`` for each prefix."""
    for prefix in prefixes:
        hit = 0
        for name, p in model.named_parameters():
            if name == prefix or name.startswith(prefix + "."):
                p.requires_grad_(False)
                hit += 1
        if hit == 0:
            names = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}
            raise ConfigError(f"--freeze_param {prefix!r} matches no parameter"
                              f"{suggestion(prefix, names)}")
        logger.info("froze %d parameter tensors under '%s'", hit, prefix)
