"""YAML -> plain Python data plus the source position of every key and value.

Why not plain ``yaml.safe_load``: we need ``file:line:col`` for every error, duplicate keys
must be errors (PyYAML silently keeps the last), and ``1e12`` must be a number (YAML 1.1
only reads ``1.0e12`` as a float).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from planner.config.errors import ConfigError, Problem

Path_ = tuple  # a key path: ("deployment", "precision", "weights") or ("sweep", 0, "axes")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot (1e12, 44e9)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789"),
)


@dataclass
class Located:
    """Data loaded from one YAML document with a position for each path."""

    data: object
    file: str
    value_marks: dict = field(default_factory=dict)  # path -> (line, col) of the value
    key_marks: dict = field(default_factory=dict)  # path -> (line, col) of the key

    def where(self, path: Path_, key: bool = False) -> tuple[int | None, int | None]:
        """Position of ``path``, or of its nearest ancestor that has one."""
        marks = self.key_marks if key else self.value_marks
        p = tuple(path)
        while p:
            if p in marks:
                return marks[p]
            if not key and p in self.key_marks:
                return self.key_marks[p]
            p = p[:-1]
        return self.value_marks.get((), (None, None))

    def problem(self, path: Path_, message: str, got: object = None, has_got: bool = False,
                key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, dotted(path), message, got, has_got)


def dotted(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_text(text: str, file: str = "<string>") -> Located:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark
        line, col = (m.line + 1, m.column + 1) if m else (None, None)
        raise ConfigError([Problem(file, line, col, "", f"YAML syntax error: {e.problem}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(file, None, None, "", f"YAML error: {e}")]) from None
    finally:
        loader.dispose()
    loc = Located(None, file)
    problems: list[Problem] = []
    if node is None:
        loc.data = {}
        return loc
    loc.data = _build(node, (), loc, problems, _Loader(""))
    if problems:
        raise ConfigError(problems)
    return loc


def load_file(path: str | Path) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), None, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(str(path), None, None, "", f"cannot read file: {e}")]) from None
    return load_text(text, str(path))


def _build(node, path: Path_, loc: Located, problems: list[Problem], ctor: yaml.SafeLoader):
    loc.value_marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict = {}
        for knode, vnode in node.value:
            key = ctor.construct_object(knode, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                line, col = _mark(knode)
                problems.append(Problem(loc.file, line, col, dotted(path), "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                line, col = _mark(knode)
                first = loc.key_marks[path + (key,)][0]
                problems.append(Problem(loc.file, line, col, dotted(path + (key,)),
                                        f"duplicate key (first defined on line {first})"))
                continue
            loc.key_marks[path + (key,)] = _mark(knode)
            out[key] = _build(vnode, path + (key,), loc, problems, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, path + (i,), loc, problems, ctor) for i, n in enumerate(node.value)]
    try:
        return ctor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        line, col = _mark(node)
        problems.append(Problem(loc.file, line, col, dotted(path), f"cannot read value: {e.problem}"))
        return None
