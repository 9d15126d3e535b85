"""User-facing configuration errors: one line per problem, ``FILE:LINE:COL: path: message (got X)``.

Why a type of our own: every command catches :class:`ConfigError` and prints its lines with
exit code 2, so no user mistake ever ends in a Python traceback.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    col: int | None
    path: str
    message: str
    got: object = None
    has_got: bool = False

    def __str__(self) -> str:
        where = self.file
        if where and self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        head = (f"{where}: " if where else "error: ") + (f"{self.path}: " if self.path else "")
        tail = f" (got {_short(self.got)})" if self.has_got else ""
        return head + self.message + tail


def _short(v: object, limit: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass
class ConfigError(Exception):
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
