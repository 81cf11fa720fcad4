"""Data errors that say where, what and how to fix.

Validators collect every :class:`Problem` they find and raise one :class:`DataError`
at the end, so a user fixes a data directory in one pass instead of one line per run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: How many problems ``str(DataError)`` spells out; the rest are counted
#: (all of them stay in ``DataError.problems``).
MAX_SHOWN = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data.

    Attributes:
        file: the file (or audio spec) the problem is in.
        line: 1-based line number in ``file`` (None when not line-based).
        utt: utterance id concerned (None when unknown).
        value: the offending text / value (None when there is none).
        message: what is wrong.
        hint: what to do about it.
    """

    file: str | None
    line: int | None
    utt: str | None
    value: str | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.utt is not None:
            parts.append(f"utt '{self.utt}'")
        text = ": ".join([*parts, self.message])
        if self.value is not None:
            value = self.value if len(self.value) <= 200 else self.value[:200] + "..."
            text += f" (value: {value!r})"
        if self.hint:
            text += f". Fix: {self.hint}"
        return text


class DataError(Exception):
    """One or more :class:`Problem` s found in the data.

    ``DataError(problems)`` with a list of problems, or ``DataError("message")``
    (used when an error is re-raised across a DataLoader worker boundary).
    """

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, Problem):
            problems = [problems]
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            self._text = problems
        else:
            self.problems = list(problems)
            self._text = None
        super().__init__(str(self))

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        n = len(self.problems)
        head = f"{n} data problem{'s' if n != 1 else ''}:"
        lines = [f"  - {p}" for p in self.problems[:MAX_SHOWN]]
        if n > MAX_SHOWN:
            lines.append(f"  ... and {n - MAX_SHOWN} more (all are in DataError.problems)")
        return "\n".join([head, *lines])

    def __reduce__(self):
        # Picklable (DataLoader workers send exceptions to the main process).
        return (DataError, (self.problems if self._text is None else self._text,))


def raise_if(problems: list[Problem]) -> None:
    """Raise one :class:`DataError` holding ``problems`` if there are any."""
    if problems:
        raise DataError(problems)
