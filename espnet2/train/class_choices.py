"""One registry per pluggable slot: ``--<name>`` picks a class, ``--<name>_conf`` its kwargs.

Entries may be classes or lazy ``"package.module:ClassName"`` strings, resolved (and checked
against ``type_check``) on first use, so the parser and ``--help`` do not import every module.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from typing import Any

from espnet2.utils.config import NestedDictAction, str_or_none, suggestion

_NONE_NAMES = {"none", "null", "nil", ""}


class ClassChoices:
    """Registry for one slot.

    Args:
        name: slot name, e.g. ``"encoder"`` (gives ``--encoder`` and ``--encoder_conf``).
        classes: ``{choice: class or "module:Class"}``; keys are case-insensitive.
        type_check: base class every choice must derive from.
        default: default choice (``None``: not used when ``optional``, else must be given).
        optional: whether ``none``/``null`` is an accepted value.
    """

    def __init__(
        self,
        name: str,
        classes: dict[str, type | str],
        type_check: type | None = None,
        default: str | None = None,
        optional: bool = False,
    ) -> None:
        self.name = name
        self.classes = {k.lower(): v for k, v in classes.items()}
        self.type_check = type_check
        self.optional = optional
        if default is not None and default.lower() not in self.classes:
            raise ValueError(f"{name}: default {default!r} is not one of {self.choices()}")
        self.default = default.lower() if default is not None else None

    def choices(self) -> list[str]:
        """Valid values for ``--<name>`` (``none`` last when optional)."""
        return list(self.classes) + (["none"] if self.optional else [])

    def normalize(self, value: Any) -> str | None:
        """Lower-cased choice, ``None`` for none/null; raises ValueError for unknown names."""
        if value is None or str(value).strip().lower() in _NONE_NAMES:
            if self.optional:
                return None
            raise ValueError(
                f"--{self.name} cannot be none; choose one of {', '.join(self.choices())}"
            )
        key = str(value).strip().lower()
        if key not in self.classes:
            raise ValueError(
                f"--{self.name} {value!r} is not a registered {self.name}; choices: "
                f"{', '.join(self.choices())}{suggestion(key, self.choices())}"
            )
        return key

    def get_class(self, name: str | None) -> type | None:
        """The class registered as ``name`` (``None`` for none when optional)."""
        key = self.normalize(name)
        if key is None:
            return None
        cls = self.classes[key]
        if isinstance(cls, str):
            module, _, attr = cls.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            self.classes[key] = cls
        if self.type_check is not None and not (
            inspect.isclass(cls) and issubclass(cls, self.type_check)
        ):
            raise TypeError(f"{self.name}: {cls!r} must derive from {self.type_check.__name__}")
        return cls

    def add_arguments(self, parser: argparse._ActionsContainer) -> None:
        """Add ``--<name>`` (validated choice) and ``--<name>_conf`` (YAML dict or k=v)."""

        def choice_type(value: str) -> str | None:
            try:
                return self.normalize(value)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from e

        choice_type.__name__ = f"{self.name} choice"
        parser.add_argument(
            f"--{self.name}",
            type=choice_type,
            default=self.default,
            help=f"The {self.name} type: {', '.join(self.choices())} (default {self.default})",
        )
        parser.add_argument(
            f"--{self.name}_conf",
            action=NestedDictAction,
            default={},
            help=f"Keyword arguments of the {self.name} class: YAML mapping or key=value,...",
        )


def constructor_defaults(cls: type, skip: set[str] | frozenset[str] = frozenset()) -> dict:
    """``{arg: default}`` of ``cls.__init__`` for arguments that have a default."""
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
    return out


def check_conf_keys(cls: type, conf: dict, where: str,
                    filled: set[str] | frozenset[str]) -> list[str]:
    """Unknown keys of ``conf`` as kwargs of ``cls`` (with a suggestion). Keys in ``filled``
    are set by ``build_model`` (it checks a user-given value against the computed one)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return []
    valid = [n for n in params if n != "self" and n not in filled]
    problems = []
    for key in conf:
        if key not in params and key not in filled:
            problems.append(
                f"{where}: unknown key '{key}' for {cls.__name__}{suggestion(key, valid)}; "
                f"valid keys: {', '.join(valid)}"
            )
    return problems


__all__ = ["ClassChoices", "constructor_defaults", "check_conf_keys", "str_or_none"]
