"""Built-in and user hardware/model specs, found by name or by path.

Lookup order for a name: ``./hardware_specs/`` (or ``./models/``) next to the scenario
file, then in the current directory, then the built-in catalog. A value containing ``/``
or ending in ``.yaml`` is a path. ``extends: NAME`` inherits every key of another spec and
overrides what it sets (one level of nested mappings is merged); it must name itself.

Names are matched ignoring case, and a model is also found by any of its ``aliases`` (the
Hugging Face ids whose config it reproduces, e.g. ``deepseek-ai/DeepSeek-V3``, with or without
the organisation); aliases are not inherited through ``extends``. A name that matches nothing
is an error that suggests the closest name or alias ("gb200" -> "gb200-nvl72").
"""
from __future__ import annotations

import functools
from pathlib import Path

from planner.config.errors import ConfigError, Problem, did_you_mean
from planner.config.load import validate
from planner.config.schema import BondedSramSpec, HardwareSpec, ModelSpec
from planner.config.yamlio import Located, load_file

_REPO_SPECS = Path(__file__).resolve().parents[2] / "hardware_specs"
MODELS_DIR = Path(__file__).resolve().parent / "models"


def hardware_dir() -> Path:
    """The built-in hardware_specs folder (the repository's, or the installed copy)."""
    if _REPO_SPECS.is_dir():
        return _REPO_SPECS
    # installed wheel: the specs ship as package data next to this package (a plain folder;
    # importlib.resources would hand back a MultiplexedPath for a namespace package)
    return Path(__file__).resolve().parents[1] / "_hardware_specs"


def _search_dirs(kind: str, base_dir: Path | None) -> list[Path]:
    sub = "hardware_specs" if kind == "hardware" else "models"
    dirs = []
    for d in (base_dir, Path.cwd()):
        if d is not None and (d / sub).is_dir():
            dirs.append((d / sub).resolve())
    dirs.append(hardware_dir() if kind == "hardware" else MODELS_DIR)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def names(kind: str, base_dir: Path | None = None) -> list[str]:
    """All spec names visible for ``kind`` ('hardware' or 'model')."""
    seen: list[str] = []
    for d in _search_dirs(kind, base_dir):
        for f in sorted(d.glob("*.yaml")):
            if f.stem not in seen:
                seen.append(f.stem)
    return seen


def find(kind: str, ref: str, base_dir: Path | None = None) -> Path | None:
    """The spec file ``ref`` names: a path, a name (any case) or, for models, an alias."""
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        for root in ([base_dir] if base_dir else []) + [Path.cwd()]:
            p = (root / ref) if not Path(ref).is_absolute() else Path(ref)
            if p.is_file():
                return p
        if ref.endswith((".yaml", ".yml")) or kind != "model":
            return None
    for d in _search_dirs(kind, base_dir):
        p = d / f"{ref}.yaml"
        if p.is_file():
            return p
    name = canonical(kind, ref, base_dir)
    return find(kind, name, base_dir) if name and name != ref else None


def canonical(kind: str, ref: str, base_dir: Path | None = None) -> str | None:
    """The spec name ``ref`` stands for, ignoring case, or (models) through an alias."""
    low = ref.strip().lower()
    for n in names(kind, base_dir):
        if n.lower() == low:
            return n
    if kind == "model":
        return aliases(base_dir).get(low)
    return None


def aliases(base_dir: Path | None = None) -> dict[str, str]:
    """Lower-cased alias -> model name, each alias with and without its organisation prefix."""
    out: dict[str, str] = {}
    for d in _search_dirs("model", base_dir):
        for f in sorted(d.glob("*.yaml")):
            for a in _aliases_of(str(f), f.stat().st_mtime_ns):
                for key in (a.lower(), a.lower().rsplit("/", 1)[-1]):
                    out.setdefault(key, f.stem)
    return out


@functools.lru_cache(maxsize=1024)
def _aliases_of(path: str, mtime_ns: int) -> tuple:
    try:
        data = load_file(Path(path)).data
    except ConfigError:
        return ()  # a broken file is reported when it is used, not while looking up another
    found = data.get("aliases") if isinstance(data, dict) else None
    return tuple(str(a) for a in found) if isinstance(found, list) else ()


def _merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _load_raw(kind: str, path: Path, chain: tuple = ()) -> Located:
    loc = load_file(path)
    if not isinstance(loc.data, dict):
        raise ConfigError([loc.problem((), "expected a mapping at the top of the file")])
    parent = loc.data.get("extends")
    if parent is None:
        return loc
    if not isinstance(parent, str):
        raise ConfigError([loc.problem(("extends",), "extends takes a spec name", parent, True)])
    if "name" not in loc.data:  # else it would take its parent's, and pass for it in every table
        raise ConfigError([loc.problem((), f"required key 'name' is missing (a spec that extends '{parent}' "
                                       "needs a name of its own)")])
    ppath = find(kind, parent, path.parent.parent)
    if ppath is None:
        raise ConfigError([loc.problem(("extends",), f"no {kind} spec named '{parent}'"
                                       + did_you_mean(parent, names(kind, path.parent.parent)), parent, True)])
    if ppath.resolve() in chain:
        raise ConfigError([loc.problem(("extends",), "circular extends", parent, True)])
    base = _load_raw(kind, ppath, chain + (path.resolve(),))
    merged = _merge(base.data, loc.data)
    merged["extends"] = parent
    if "aliases" in base.data or "aliases" in loc.data:  # an alias names one spec, not its children
        merged["aliases"] = loc.data.get("aliases", [])
    return Located(merged, loc.file, loc.value_marks, loc.key_marks)


def _ref_problem(kind: str, ref: str, where: Located | None, path: tuple, base_dir: Path | None) -> ConfigError:
    known = aliases(base_dir) if kind == "model" else {}
    if ref.endswith((".yaml", ".yml")) or (kind != "model" and "/" in ref):  # a path, as find took it
        where_ = f" (relative to {base_dir} or the current folder)" if base_dir and not Path(ref).is_absolute() else ""
        msg = f"{kind} spec file '{ref}' not found{where_}"
    else:
        msg = f"no {kind} named '{ref}'" + did_you_mean(ref, names(kind, base_dir), known)
    if where is None:
        return ConfigError([Problem("", None, None, "", msg)])
    return ConfigError([where.problem(path, msg, ref, True)])


def load_hardware(ref: str, base_dir: Path | None = None, where: Located | None = None,
                  path: tuple = ()) -> HardwareSpec | BondedSramSpec:
    """The hardware (or bonded-SRAM option) spec named or located by ``ref``."""
    p = find("hardware", ref, base_dir)
    if p is None:
        raise _ref_problem("hardware", ref, where, path, base_dir)
    return _validated("hardware", str(p.resolve()), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _validated(kind: str, path: str, mtime_ns: int):
    """Validated spec of one file; cached by path and modification time (specs are frozen).
    A parent edited after its child was cached is picked up on the next process start."""
    loc = _load_raw(kind, Path(path))
    if kind == "model":
        return validate(ModelSpec, loc)
    return validate(BondedSramSpec if loc.data.get("kind") == "bonded_sram" else HardwareSpec, loc)


def load_model(ref: str | dict, base_dir: Path | None = None, where: Located | None = None,
               path: tuple = ()) -> ModelSpec:
    """A model from the catalog (name), a YAML path, or an inline mapping in a scenario."""
    if isinstance(ref, dict):
        return validate(ModelSpec, where, ref, path)
    p = find("model", ref, base_dir)
    if p is None:
        raise _ref_problem("model", ref, where, path, base_dir)
    return _validated("model", str(p.resolve()), p.stat().st_mtime_ns)


def all_hardware(base_dir: Path | None = None) -> list:
    return [load_hardware(n, base_dir) for n in names("hardware", base_dir)]


def all_models(base_dir: Path | None = None) -> list[ModelSpec]:
    return [load_model(n, base_dir) for n in names("model", base_dir)]
