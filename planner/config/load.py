"""Validate located YAML data against a schema class; turn pydantic errors into located lines.

Why here and not in the schema: positions belong to the file, not to the data model, and
"did you mean" needs the field names of the class at the error's location.
"""
from __future__ import annotations

import copy
import types
import typing

from pydantic import BaseModel, ValidationError

from planner.config.errors import ConfigError, Problem, closest, did_you_mean
from planner.config.yamlio import Located

_MISSING = object()


def _strip(tp):
    """The annotation without Annotated[...] and Optional[...] wrappers."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _strip(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _strip(args[0]) if len(args) == 1 else tp
    return tp


def _unwrap(tp):
    """The BaseModel class (if any) a field annotation leads to."""
    tp = _strip(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _container_item(tp):
    """The item type of a list[...] or dict[..., X] annotation."""
    tp = _strip(tp)
    return typing.get_args(tp)[-1] if typing.get_origin(tp) in (list, dict) else None


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names (and aliases) of the model class found by walking ``loc`` from ``cls``."""
    current: object = cls
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            f = current.model_fields.get(part) if isinstance(part, str) else None
            if f is None:
                f = next((v for v in current.model_fields.values() if v.alias == part), None)
            if f is None:
                return []
            nxt = _unwrap(f.annotation)
            current = nxt if nxt is not None else f.annotation
        else:  # inside a list or dict: step to the item type
            item = _container_item(current)
            nxt = _unwrap(item) if item is not None else None
            current = nxt if nxt is not None else item
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def message(err: dict) -> str:
    """A pydantic error's text without its type prefix, lower-cased as a clause."""
    if err["type"] == "int_parsing_size":  # pydantic's wording names its parser, not the limit
        return "too large a number for this key"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg[:1].lower() + msg[1:]


def _lookup(data, path: tuple):
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def problems_from(err: ValidationError, cls: type[BaseModel], loc: Located, prefix: tuple = (),
                  data=None) -> list[Problem]:
    """Located problems for every error pydantic found in ``data`` (found at ``prefix``)."""
    out: list[Problem] = []
    data = loc.data if data is None else data
    errors = err.errors(include_url=False)
    # a misspelt required key is one problem: the unknown key, with the name it was meant as
    meant = {tuple(e["loc"][:-1]) + (_closest_field(cls, tuple(e["loc"])),) for e in errors
             if e["type"] == "extra_forbidden"}
    for e in errors:
        path = tuple(p for p in e["loc"])
        full = prefix + path
        kind = e["type"]
        if kind == "extra_forbidden":
            hint = did_you_mean(path[-1], _fields_at(cls, path[:-1]))
            out.append(loc.problem(full, "unknown key" + hint, key=True))
        elif kind == "missing" and path in meant:
            continue
        elif kind == "missing":
            out.append(loc.problem(full[:-1], f"required key '{path[-1]}' is missing"))
            out[-1] = Problem(out[-1].file, out[-1].line, out[-1].col, ".".join(map(str, full)),
                              out[-1].message)
        else:
            got = _lookup(data, path)
            shown = got is not _MISSING and not isinstance(got, (dict, list))
            out.append(loc.problem(full, message(e), got, shown))
    return sorted(out, key=lambda p: (p.line or 0, p.col or 0))


def _closest_field(cls: type[BaseModel], path: tuple):
    """The field an unknown key at ``path`` most likely meant (None: none close)."""
    return closest(str(path[-1]), _fields_at(cls, path[:-1]))


def validate(cls: type[BaseModel], loc: Located, data=None, prefix: tuple = ()):
    """``cls`` validated from ``data`` (default: the whole document), or ConfigError."""
    data = loc.data if data is None else data
    if not isinstance(data, dict):
        raise ConfigError([loc.problem(prefix, "expected a mapping", data, True)])
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(problems_from(err, cls, loc, prefix, data)) from None


def validate_dropping(cls: type[BaseModel], data: dict, rounds: int = 4):
    """(``cls`` validated from ``data`` with every key it refuses dropped, the paths dropped), or
    (None, paths) when a refusal cannot be dropped (a required key, the document as a whole): the
    checks that need a whole model (catalog names, files) still run on data with schema problems."""
    data, dropped = copy.deepcopy(data), []
    for _ in range(rounds):
        try:
            return cls.model_validate(data), dropped
        except ValidationError as err:
            errors = err.errors(include_url=False)
            if any(e["type"] == "missing" for e in errors):
                return None, dropped
            cut = [tuple(e["loc"]) for e in errors if _drop(data, tuple(e["loc"]))]
            if not cut:
                return None, dropped
            dropped += cut
    return None, dropped


def _drop(data, path: tuple) -> bool:
    """Delete the mapping key at ``path`` (not a list item: the others' indices would move)."""
    if not path:
        return False
    parent = _lookup(data, path[:-1])
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
        return True
    return False
