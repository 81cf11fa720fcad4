"""Option parsing for shell drivers (``ssl.sh``), with Kaldi ``parse_options.sh`` semantics.

The options are declared once, in the driver itself, between the marker lines
``# <options>`` and ``# </options>``; each declaration is one line::

    name=default   # help text
    name=default   # [a|b|c] help text        (the value must be one of the choices)
    name=""        # (required) help text     (an error unless given a non-empty value)

Bash executes these lines (they set the defaults); :func:`parse_declarations` reads the same
lines to know the names, defaults and help. :func:`parse_args` then turns ``--name value``
(or ``--name=value``; ``-`` and ``_`` interchangeable, last one wins) into shell assignments.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE]-?\d+)?")
BEGIN, END = "# <options>", "# </options>"
_DECL = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\"[^\"]*\"|'[^']*'|\S*)\s*(?:#\s?(?P<help>.*))?$"
)


class OptionError(ValueError):
    """A bad command line: unknown option, missing value, wrong type."""


@dataclass(frozen=True)
class Option:
    """One declared option: ``name``, its ``default`` (unquoted) and one-line ``help``."""

    name: str
    default: str
    help: str

    @property
    def choices(self) -> list[str] | None:
        m = re.match(r"^\[([^\]]*)\]", self.help)
        return m[1].split("|") if m else None

    @property
    def required(self) -> bool:
        return self.help.startswith("(required)")

    @property
    def is_bool(self) -> bool:
        return self.default in ("true", "false")

    @property
    def is_number(self) -> bool:
        return _NUMBER.fullmatch(self.default) is not None


def parse_declarations(script: str | Path) -> list[Option]:
    """Read the ``# <options>`` block of ``script``; errors name the file and line."""
    lines = Path(script).read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(BEGIN) + 1
        stop = lines.index(END, start)
    except ValueError:
        raise OptionError(
            f"{script}: no '{BEGIN}' ... '{END}' block; declare options there"
        ) from None
    options: list[Option] = []
    for lineno in range(start, stop):
        line = lines[lineno].strip()
        if not line or line.startswith("#"):
            continue
        m = _DECL.match(line)
        if m is None:
            raise OptionError(
                f"{script}:{lineno + 1}: cannot parse option declaration {line!r}; "
                "write it as name=default  # help"
            )
        value = m["value"]
        if value[:1] in "\"'" and len(value) >= 2:
            value = value[1:-1]
        options.append(Option(m["name"], value, (m["help"] or "").strip()))
    return options


def _closest(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    return f"; did you mean --{near[0]}?" if near else ""


def parse_args(options: list[Option], argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs -> {name: value} for the options given (defaults stay in bash).

    Raises :class:`OptionError` naming the offending argument and the closest valid option.
    """
    by_name = {o.name: o for o in options}
    given: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise OptionError(f"unexpected positional argument {arg!r}; options are --name value")
        key, eq, value = arg[2:].partition("=")
        name = key.replace("-", "_")
        if name not in by_name:
            raise OptionError(f"unknown option --{key}{_closest(name, list(by_name))}")
        if not eq:
            if i + 1 >= len(argv):
                raise OptionError(f"option --{key} needs a value")
            value = argv[i + 1]
            i += 1
        given[name] = _check(by_name[name], value)
        i += 1
    missing = [o.name for o in options if o.required and not given.get(o.name, o.default)]
    if missing:
        raise OptionError("missing required option(s): " + " ".join(f"--{n}" for n in missing))
    return given


def _check(opt: Option, value: str) -> str:
    if opt.choices is not None and value not in opt.choices:
        raise OptionError(f"--{opt.name} {value!r} is not one of {opt.choices}")
    if opt.is_bool and value not in ("true", "false"):
        raise OptionError(f"--{opt.name} takes true or false, got {value!r}")
    if opt.is_number and _NUMBER.fullmatch(value) is None:
        raise OptionError(f"--{opt.name} takes a number, got {value!r}")
    return value


def shell_assignments(given: dict[str, str]) -> str:
    """Bash code assigning each given option (values quoted safely)."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in given.items())


def format_help(options: list[Option], usage: str) -> str:
    """``--help`` text: one line per option with its default, in declaration order."""
    width = max(len(o.name) for o in options) + 2
    rows = [usage, "", "Options (--name value; '-' and '_' are interchangeable):"]
    for o in options:
        default = repr(o.default) if o.default == "" or " " in o.default else o.default
        rows.append(f"  --{o.name:<{width}} {o.help} (default: {default})")
    return "\n".join(rows) + "\n"
