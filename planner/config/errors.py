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


def closest(word: str, choices, aliases: dict | None = None) -> str | None:
    """The choice a mistyped ``word`` most likely meant, or None. Case is ignored; a choice the
    word begins ("gb200" -> "gb200-nvl72") or sits inside beats a merely similar spelling
    (difflib alone would offer "b200"); ``aliases`` (alias -> choice) are searched too."""
    w = str(word).strip().lower()
    pool = {str(c).lower(): str(c) for c in choices}
    for a, name in (aliases or {}).items():
        pool.setdefault(str(a).lower(), str(name))
    if not w:
        return None
    if w in pool:
        return pool[w]
    for hits in ([k for k in pool if k.startswith(w)] if len(w) >= 2 else [],
                 [k for k in pool if w in k] if len(w) >= 3 else []):
        if hits:
            return pool[min(hits, key=lambda k: (len(k), k))]
    close = difflib.get_close_matches(w, list(pool), n=1, cutoff=0.6)
    return pool[close[0]] if close else None


def did_you_mean(word: str, choices, aliases: dict | None = None) -> str:
    close = closest(word, choices, aliases)
    return f"; did you mean '{close}'?" if close else ""


def beyond_window(context: int, model) -> str:
    """What is wrong with a context longer than ``model``'s window ("" when it fits): each
    interface adds how to ask for it anyway (a flag, a scenario key)."""
    if context <= model.context_window:
        return ""
    return f"{context:,} tokens is beyond {model.name}'s context window ({model.context_window:,})"
