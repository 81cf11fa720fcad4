"""Small helpers for YAML configs and argparse value types (ESPnet's conventions).

* ``load_yaml`` / ``dump_yaml``: safe YAML in, plain YAML out (tuples become lists; atomic).
* ``str2bool`` / ``str_or_none`` / ``int_or_none`` / ``float_or_none`` / ``humanfriendly_int``:
  argparse ``type=`` callables. Booleans follow ESPnet: ``true/false`` (case-insensitive).
* ``NestedDictAction``: ``--x_conf '{a: 1}'`` or ``--x_conf a=1,b.c=2``; merges into the current
  value, so a CLI ``--frontend_conf fs=16k`` updates the YAML's ``frontend_conf`` instead of
  replacing it (ESPnet semantics).
* ``closest``: "did you mean" suggestions for unknown keys and choices.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from espnet2.utils.fileio import atomic_write

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NONE = {"none", "null", "nil", ""}


class ConfigError(ValueError):
    """A user-facing configuration problem (unknown key, wrong type, conflicting options)."""


def closest(key: str, candidates: Iterable[str]) -> str | None:
    """The most similar candidate to ``key`` (difflib), or ``None`` when nothing is close."""
    matches = difflib.get_close_matches(str(key), [str(c) for c in candidates], n=1, cutoff=0.5)
    return matches[0] if matches else None


def suggestion(key: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    best = closest(key, candidates)
    return f" (did you mean '{best}'?)" if best else ""


def str2bool(value: str | bool) -> bool:
    """``true/false`` (also yes/no, 1/0, on/off), case-insensitive."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def str_or_none(value: Any) -> str | None:
    """``none``/``null``/empty -> None, anything else -> str."""
    if value is None or str(value).strip().lower() in _NONE:
        return None
    return str(value)


def int_or_none(value: Any) -> int | None:
    if str_or_none(value) is None:
        return None
    return strict_int(value)


def float_or_none(value: Any) -> float | None:
    if str_or_none(value) is None:
        return None
    return float(value)


def strict_int(value: Any) -> int:
    """An int that rejects ``1.5`` and booleans (accepts ``"3"``, ``3.0`` and ``"1e3"``)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got the boolean {value!r}")
    if isinstance(value, int):
        return value
    f = float(value)
    if not f.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(f)


def humanfriendly_int(value: Any) -> int:
    """``16k`` -> 16000, ``1.5M`` -> 1500000, ``44800000`` -> 44800000 (SI, decimal)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 16k, got {value!r}")
    if isinstance(value, (int, float)):
        return strict_int(value)
    import humanfriendly

    try:
        return int(humanfriendly.parse_size(str(value)))
    except humanfriendly.InvalidSize as e:
        raise ValueError(f"expected a size like 16k or 16000, got {value!r}") from e


def yaml_scalar(text: str) -> Any:
    """Parse one CLI value with YAML (``1`` -> int, ``true`` -> bool, ``16k`` -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_nested(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        nxt = d.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            d[k] = nxt
        d = nxt
    d[keys[-1]] = value


def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside [] or {} (``a=[1,2],b=3`` -> 2 items)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(s[start:i])
            start = i + 1
    items.append(s[start:])
    return [it for it in items if it.strip()]


def parse_dict_arg(text: str | dict | None) -> dict:
    """``'{a: 1}'`` (YAML mapping) or ``a=1,b.c=x`` -> dict. ``none`` -> {}."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    s = str(text).strip()
    if s.lower() in _NONE:
        return {}
    if "=" in s and not s.startswith("{"):
        out: dict = {}
        for item in _split_top_level(s):
            if "=" not in item:
                raise ValueError(f"expected key=value pairs separated by ',', "
                                 f"got {item!r} in {s!r}")
            k, v = item.split("=", 1)
            _set_nested(out, k.strip(), yaml_scalar(v.strip()))
        return out
    value = yaml.safe_load(s)
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping like '{{key: value}}' or key=value, got {s!r}")
    return value


def merge_dict(base: dict, update: dict) -> dict:
    """Recursive dict update (new dict; ``update`` wins)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dict(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def strict_float(value: Any) -> float:
    """A float that rejects booleans."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


class NestedDictAction(argparse.Action):
    """``--x_conf '{a: 1}'`` or ``--x_conf a=1``: merged into the current value (YAML default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            update = parse_dict_arg(values)
        except (ValueError, yaml.YAMLError) as e:
            parser.error(f"{option_string} {values!r}: {e}")
        current = getattr(namespace, self.dest, None) or {}
        setattr(namespace, self.dest, merge_dict(current, update))


class YamlListAction(argparse.Action):
    """A list-valued option given on the CLI as YAML, e.g. ``--loss '[{name: hubert}]'``."""

    def __call__(self, parser, namespace, values, option_string=None):
        value = yaml_scalar(values)
        if isinstance(value, dict):
            value = [value]
        if value is not None and not isinstance(value, list):
            parser.error(f"{option_string}: expected a YAML list, got {values!r}")
        setattr(namespace, self.dest, value or [])


def _plain(obj: Any) -> Any:
    """Tuples -> lists, Paths -> str, numpy scalars -> python, recursively (for safe_dump)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (str, bytes)):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)  # e.g. a class or dtype default: shown, not reloadable as that object


def load_yaml(path: str | os.PathLike) -> dict:
    """Load a YAML mapping; errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        with p.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of option: value, "
                          f"got {type(data).__name__}")
    return data


class _Dumper(yaml.SafeDumper):
    """Mappings in block style; lists of scalars inline (``shapes: [[512, 10, 5], ...]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml_str(data: dict) -> str:
    return yaml.dump(_plain(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def dump_yaml(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as YAML atomically."""
    with atomic_write(path) as f:
        f.write(dump_yaml_str(data))


# ------------------------------------------------------------------ argparse <-> YAML
_TYPE_NAMES = {
    strict_int: "an integer", float: "a number", strict_float: "a number",
    str2bool: "a boolean (true/false)",
    int_or_none: "an integer or none", float_or_none: "a number or none",
    str_or_none: "a string or none", str: "a string", humanfriendly_int: "a size like 16k",
}


def str2triple(value: Any) -> list[str]:
    """``a,b,c`` or a 3-element list -> ``[a, b, c]`` (data triples, best_model_criterion)."""
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = [p.strip() for p in str(value).split(",")]
    if len(parts) != 3:
        raise ValueError(f"expected 3 comma-separated fields, got {value!r}")
    return parts


_TYPE_NAMES[str2triple] = "three comma-separated fields (a,b,c)"


class TaskArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors suggest the closest option for unknown flags."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            opts = [o for a in self._actions for o in a.option_strings]
            hints = []
            for tok in message.split(":", 1)[1].split():
                if tok.startswith("--"):
                    hints.append(f"{tok}{suggestion(tok, opts)}")
            if hints:
                message += "; " + "; ".join(hints)
        self.exit(2, f"{self.prog}: error: {message}\n(see --help for every option)\n")


def coerce_value(action: argparse.Action, value: Any) -> Any:
    """Convert a YAML value with the option's own converter; errors name the expected type."""
    if isinstance(action, NestedDictAction):
        return parse_dict_arg(value)
    if isinstance(action, YamlListAction):
        if isinstance(value, dict):
            value = [value]
        if value is not None and not isinstance(value, list):
            raise ValueError("expected a list of {name: ..., conf: {...}} entries")
        return value or []
    if isinstance(action, argparse._StoreTrueAction):
        return str2bool(value)
    many = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") or (
        isinstance(action.nargs, int))
    if many:
        if action.type is str2triple and isinstance(value, list) and len(value) == 3 and all(
                not isinstance(v, (list, tuple)) for v in value) and action.nargs == "+":
            value = [value]  # best_model_criterion: [valid, loss, min] as a single triple
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_convert(action, v) for v in items]
    return _convert(action, value)


def _convert(action: argparse.Action, value: Any) -> Any:
    conv = action.type
    expected = _TYPE_NAMES.get(conv, getattr(conv, "__name__", "a value"))
    if conv in (str, None):
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected {expected}, got a {type(value).__name__}")
        out = value if value is None and action.default is None else str(value)
    else:
        if value is None and conv in (strict_int, strict_float, str2bool, float):
            raise ValueError(f"expected {expected}, got null")
        try:
            out = conv(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ValueError(f"expected {expected} ({e})") from None
    if action.choices is not None and out not in action.choices:
        hint = suggestion(str(out), map(str, action.choices))
        raise ValueError(f"expected one of {list(action.choices)}{hint}")
    return out
