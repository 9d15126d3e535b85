"""YAML -> plain Python data plus the source position of every key and value.

Why not plain ``yaml.safe_load``: we need ``file:line:col`` for every error, duplicate keys
must be errors (PyYAML silently keeps the last), and ``1e12`` must be a number (YAML 1.1
only reads ``1.0e12`` as a float).

Hostile or broken input is a located :class:`ConfigError`, never a hang or a traceback.
Real files are under 5 kB, 250 nodes and 10 levels; the limits leave wide room:

* ``MAX_BYTES`` (4 MB): a larger file is refused unread (PyYAML, pure Python here, takes
  about 4 s for 4 MB of comments; 50 MB took minutes);
* ``MAX_NODES`` (100,000), each alias counted as the whole tree it stands for: an alias
  bomb ("billion laughs") stops at the alias that passes the limit, before the
  position-recording walk below would expand it (100,000 plain nodes take PyYAML ~6 s);
* ``MAX_DEPTH`` (100) levels, also through aliases (the composer and the walk recurse);
  an alias inside its own anchor (``&a [*a]``) is refused;
* control characters (NUL) and bytes that are not UTF-8 are refused at their line:col.

``_Loader.compose_node`` keeps the counts as PyYAML composes; the YAML is PyYAML's.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from planner.config.errors import ConfigError, Problem

Path_ = tuple  # a key path: ("deployment", "precision", "weights") or ("sweep", 0, "axes")

MAX_BYTES = 4_000_000  # decimal MB, as the rest of the planner prints sizes
MAX_NODES = 100_000
MAX_DEPTH = 100


class _Limit(yaml.YAMLError):
    """A limit above was passed at ``mark``."""
    def __init__(self, mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot (1e12, 44e9), and counts
    nodes and levels as it composes, aliases expanded, to enforce MAX_NODES and MAX_DEPTH."""

    def __init__(self, text: str):
        super().__init__(text)
        self._nodes = 0  # nodes composed so far, each alias counted as its whole tree
        self._depth = 0  # level of the node being composed (the document's root is 1)
        self._deepest = 0  # deepest level reached inside the node being composed
        self._tree: dict[str, tuple[int, int]] = {}  # finished anchor -> (nodes, levels)

    def compose_node(self, parent, index):
        event = self.peek_event()
        level = self._depth + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors:  # an undefined alias is PyYAML's error
                if event.anchor not in self._tree:
                    a = event.anchor
                    raise _Limit(event.start_mark, f"alias *{a} is inside its own anchor &{a} (recursive)")
                nodes, levels = self._tree[event.anchor]
                self._count(nodes, level + levels - 1, event.start_mark, alias=True)
            return super().compose_node(parent, index)
        before, deepest = self._nodes, self._deepest
        self._count(1, level, event.start_mark)
        self._depth = self._deepest = level
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self._tree[event.anchor] = (self._nodes - before, self._deepest - level + 1)
        self._depth, self._deepest = level - 1, max(deepest, self._deepest)
        return node

    def _count(self, nodes: int, level: int, mark, alias: bool = False) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, level)
        expanded = " after alias expansion" if alias else ""
        if self._nodes > MAX_NODES:
            raise _Limit(mark, f"too many nodes{expanded} (limit {MAX_NODES:,})"
                         + (": an alias bomb?" if alias else ""))
        if level > MAX_DEPTH:
            raise _Limit(mark, f"nested more than {MAX_DEPTH} levels deep{expanded}")


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
    problems: list = field(default_factory=list)  # found while reading, kept (keep_going): a duplicate key...

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


def inner_paths(value, prefix: Path_ = ()):
    """Key paths inside a mapping or list value, depth first (none for a scalar)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from inner_paths(v, prefix + (k,))


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_text(text: str, file: str = "<string>", keep_going: bool = False) -> Located:
    """The document's data and positions. A YAML syntax error always raises; problems found while
    building the data (a duplicate key keeps its first value) raise too, unless ``keep_going``,
    which keeps them in ``problems`` so the caller can report them with its own."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _too_big(file, size)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # PyYAML checks every character up front
        line, col = _line_col(text, e.position)
        what = "a NUL byte (binary file?)" if e.character == 0 else f"character U+{e.character:04X}"
        raise ConfigError([Problem(file, line, col, "", f"{what} is not allowed in YAML")]) from None
    try:
        node = loader.get_single_node()
    except _Limit as e:
        raise ConfigError([Problem(file, *_mark_of(e.mark), "", e.message)]) from None
    except yaml.MarkedYAMLError as e:
        raise ConfigError([Problem(file, *_mark_of(e.problem_mark), "",
                                   f"YAML syntax error: {e.problem}")]) from None
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
    if problems and not keep_going:
        raise ConfigError(problems)
    loc.problems = problems
    return loc


def load_file(path: str | Path, keep_going: bool = False) -> Located:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never more: /dev/zero or a 50 MB file stop here
            size = os.fstat(f.fileno()).st_size  # 0 for /dev/zero and pipes
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), None, None, "", "file not found")]) from None
    except OSError as e:
        raise ConfigError([Problem(str(path), None, None, "", f"cannot read file: {e}")]) from None
    if len(raw) > MAX_BYTES:
        raise _too_big(str(path), size)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode("utf-8"), None)
        raise ConfigError([Problem(str(path), line, col, "", f"byte 0x{raw[e.start]:02X} is not valid UTF-8 "
                                                             "(save the file as UTF-8)")]) from None
    # as Path.read_text did (universal newlines), so values and positions do not change
    return load_text(text.replace("\r\n", "\n").replace("\r", "\n"), str(path), keep_going)


def _too_big(file: str, size: int) -> ConfigError:
    what = (f"over {MAX_BYTES / 1e6:g} MB" if size <= MAX_BYTES  # size unknown (/dev/zero)
            else f"{size:,} bytes" if size < MAX_BYTES + 50_000 else f"{size / 1e6:.1f} MB")
    return ConfigError([Problem(file, 1, 1, "", f"file is {what}; the limit is {MAX_BYTES / 1e6:g} MB")])


_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what PyYAML counts as a new line


def _line_col(text: str, pos: int | None) -> tuple[int, int]:
    """1-based line and column of character ``pos`` (default: the end), as PyYAML counts."""
    pos = len(text) if pos is None else pos
    line, start = 1, 0
    for m in _BREAK.finditer(text, 0, pos):
        line, start = line + 1, m.end()
    return line, pos - start + 1


def _mark_of(mark) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark else (None, None)


def _build(node, path: Path_, loc: Located, problems: list[Problem], ctor: yaml.SafeLoader):
    loc.value_marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        try:
            ctor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        except yaml.MarkedYAMLError as e:
            problems.append(Problem(loc.file, *_mark_of(e.problem_mark), dotted(path), f"bad merge: {e.problem}"))
            return None
        out: dict = {}
        for knode, vnode in node.value:
            ok, key = _construct(knode, path, loc, problems, ctor, "key")
            if not ok:
                continue
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
    return _construct(node, path, loc, problems, ctor, "value")[1]


def _construct(node, path: Path_, loc: Located, problems: list[Problem], ctor, what: str):
    """(True, python value of ``node``), or (False, None) and a located problem: a bad tag,
    or a value PyYAML resolves but Python refuses (``2024-13-45``, ``!!int x``)."""
    try:
        return True, ctor.construct_object(node, deep=True)
    except (yaml.MarkedYAMLError, ValueError, TypeError, OverflowError) as e:
        line, col = _mark(node)
        why = e.problem if isinstance(e, yaml.MarkedYAMLError) else e
        problems.append(Problem(loc.file, line, col, dotted(path), f"cannot read {what}: {why}"))
        return False, None
