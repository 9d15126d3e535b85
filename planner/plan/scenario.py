"""Scenario files: load + validate, resolve catalog references, expand sweep axes to points.

A point is the base scenario with one value per axis put at the axis's dotted path, then
validated again as a whole, so a bad axis value is reported at the axis's own line.
Loading is linear in the number of points: a point's positions are an overlay on the file's
(not a copy of them), and the points are counted before any is validated, so a sweep above
``max_points`` is refused in the time it takes to read the file.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
from collections import ChainMap
from dataclasses import dataclass
from pathlib import Path

from planner.physics.point import Config
from planner.config.errors import ConfigError, Problem, did_you_mean
from planner.config.load import validate, validate_dropping
from planner.config.schema import Scenario, skip_matches
from planner.config.yamlio import Located, inner_paths, load_file, load_text
from planner.plan.pools import prefill_config
from planner.plan.resolve import NAME_KEYS, PREFILL_HW, name_problems, to_config


@dataclass(frozen=True)
class Point:
    index: int
    group: str
    values: dict  # axis path -> value, in axis order
    scenario: Scenario
    config_hash: str
    config: Config | None = None  # its names resolved to specs (None: a service profile), once at load
    prefill: Config | None = None  # a disaggregated deployment's prefill pool (plan/pools.py)


@dataclass(frozen=True)
class Loaded:
    path: Path
    loc: Located
    scenario: Scenario
    points: tuple = ()  # every sweep point, validated and resolved once at load
    text: str = ""  # the YAML it was read from (what a worker process or a Dask worker is sent)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _set(data: dict, path: tuple, value) -> None:
    for p in path[:-1]:
        nxt = data.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            data[p] = nxt
        data = nxt
    data[path[-1]] = value


# fields added after points were first hashed: left out of the hash while at their default, so
# a point that does not use them keeps its hash (and a stored result stays valid)
LATER_FIELDS = {("deployment", "offload_batching"): "separate", ("deployment", "call_overhead_s"): 0.0,
                ("workload", "agentic", "cpus"): None, ("workload", "agentic", "cpu_scope"): "cluster",
                ("workload", "agentic", "cpu_speed"): 1.0, ("workload", "agentic", "plan_factor"): 1.0,
                ("service", "call_overhead_s"): 0.0, ("service", "plan_factor"): 1.0,
                ("workload", "prefix"): None, ("workload", "demand"): None}


LATER_FIELDS[("deployment", "disaggregated")] = None


def config_hash(s: Scenario) -> str:
    """Stable id of a fully resolved point (sweep definition excluded, and allow_beyond_window:
    it only decides whether a point is refused, never what a row says)."""
    data = s.model_dump(mode="json", exclude={"sweep": True, "workload": {"allow_beyond_window"}})
    for path, default in LATER_FIELDS.items():
        *parent, key = path
        node = data
        for p in parent:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(key, default) == default:
            node.pop(key, None)
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TooManyPoints(Exception):
    """The sweep expands to more than ``max_points`` points (found before validating any)."""

    def __init__(self, count: int, exact: bool, limit: int):
        super().__init__(f"{'' if exact else 'up to '}{count} points > {limit}")
        self.count, self.exact, self.limit = count, exact, limit


SKIP_SCAN = 200_000  # combinations of a group with skip rules counted one by one; above: the product


def count_points(sc: Scenario) -> tuple[int, bool]:
    """(points, exact): the product (or zip) of each group's axis lengths, less the skipped
    combinations where a group has at most SKIP_SCAN of them (else an upper bound)."""
    if not sc.sweep:
        return 1, True
    total, exact = 0, True
    for g in sc.sweep:
        if not g.axes:  # a group with problems of its own (Scenario.sweep_only): no points
            continue
        lens = [len(v) for v in g.axes.values()]
        n = min(lens) if g.mode == "zip" else math.prod(lens)
        if g.skip and n <= SKIP_SCAN:
            names = list(g.axes)
            combos = zip(*g.axes.values()) if g.mode == "zip" else itertools.product(*g.axes.values())
            try:
                n -= sum(g.skipped(dict(zip(names, c))) for c in combos)
            except (KeyError, TypeError, ValueError):  # a bad skip rule: load reports it
                exact = False
        elif g.skip:
            exact = False
        total += n
    return total, exact


def load(path: str | Path, text: str | None = None, max_points: int | None = None) -> Loaded:
    """Validate the scenario and every point of its sweep; raise ConfigError with all problems.

    With ``text`` the YAML comes from it rather than the file (a notebook's mapping, or what a
    remote worker was sent); ``path`` still names it and anchors relative paths. With
    ``max_points``, a sweep of more points raises TooManyPoints before any point is validated."""
    p = Path(path)
    loc = load_file(p, keep_going=True) if text is None else load_text(text, str(p), keep_going=True)
    problems = list(loc.problems)  # a duplicate key, say: the rest is still checked
    try:
        sc = validate(Scenario, loc)
    except ConfigError as e:  # still check the sweep's points: one run lists every problem
        sc = Scenario.sweep_only(loc.data)
        problems += e.problems
        if sc is None:  # no sweep: the base is the point
            seen: set = set()
            problems += _past_schema(Loaded(p, loc, Scenario.model_construct(sweep=[])), loc.data, loc,
                                     Point(0, "base", {}, None, ""), seen)
            raise _every(problems) from None
    if max_points is not None:
        n, exact = count_points(sc)
        if n > max_points:
            raise TooManyPoints(n, exact, max_points)
    loaded = Loaded(p, loc, sc)
    names = [g.name for g in sc.sweep]
    if sc.reference_group is not None and sc.reference_group not in names:
        problems.append(loc.problem(("reference_group",), f"not a sweep group{did_you_mean(sc.reference_group, names)}"
                                    f" (groups: {', '.join(names) or 'none'})", sc.reference_group, True))
    groups = _group_index(sc)
    points = _expand(loaded, problems) if sc.sweep else [Point(0, "base", {}, sc, config_hash(sc))]
    resolved, seen = [], set()
    for pt in points:
        done, found = _resolve(loaded, pt, pt_loc(loaded, pt, groups.get(pt.group)), seen, not sc.sweep)
        problems += found
        if done is not None:
            resolved.append(done)
    if problems:
        raise _every(problems)
    return Loaded(p, loc, sc, tuple(resolved), text if text is not None else p.read_text(encoding="utf-8"))


def _resolve(loaded: Loaded, pt: Point, loc: Located, seen: set,
             strict: bool = False) -> tuple[Point | None, list[Problem]]:
    """The point with its names resolved (None if it has problems), and all its problems (a
    single scenario's also options its model or hardware cannot take: resolve.to_config)."""
    out = check_files(loaded, pt, seen)
    try:
        cfg = to_config(loaded.base_dir, pt.scenario, loc, strict)
        pre = prefill_config(loaded.base_dir, pt.scenario, loc, cfg)
    except ConfigError as e:
        return None, e.problems + out
    return (dataclasses.replace(pt, config=cfg, prefill=pre) if not out else None), out


WINDOW_INPUTS = ("context_tokens", "prompt_tokens", "output_tokens", "allow_beyond_window")


def _past_schema(loaded: Loaded, raw: dict, loc: Located, pt: Point, seen: set) -> list[Problem]:
    """The checks beyond the schema for a point the schema refused, run on its data with the
    refused keys dropped. Kept: the checks whose inputs all survived the drop (a dropped value
    falls back to its default, which could raise a problem the file does not have): catalog
    names, a software profile of a kept hardware name, the model's window, the files read."""
    sc, dropped = validate_dropping(Scenario, raw)
    if sc is None:
        return name_problems(raw, loaded.base_dir, loc)
    gone = {tuple(d) for d in dropped}
    keep = {".".join(k) for k in NAME_KEYS} | {"hardware.bonded_sram.spec"}
    for software, hardware in ((("deployment", "software"), ("deployment", "hardware")),
                               (PREFILL_HW[:-1] + ("software",), PREFILL_HW)):
        if hardware not in gone:
            keep.add(".".join(software))
    if not gone & ({("model",)} | {("workload", k) for k in WINDOW_INPUTS}):
        keep |= {f"workload.{k}" for k in WINDOW_INPUTS}
    _, found = _resolve(loaded, dataclasses.replace(pt, scenario=sc), loc, seen)
    return [q for q in found if q.path in keep or q.file != loc.file or q.path.endswith((".file", ".trace"))]


def _every(problems: list[Problem]) -> ConfigError:
    """One error listing each distinct problem once, in file order."""
    uniq = list({str(q): q for q in problems}.values())  # a problem's value may be unhashable
    return ConfigError(sorted(uniq, key=lambda q: (q.line or 0, q.col or 0)))


def _file_refs(sc: Scenario):
    """(path to the key, 'trace' or a distribution) for every file a point reads."""
    w = sc.workload
    if w.arrival is not None and w.arrival.process == "trace" and w.arrival.trace:
        yield ("workload", "arrival", "trace"), "trace"
    dists = [("prompt_dist", w.prompt_dist), ("output_dist", w.output_dist)]
    if w.agentic is not None:
        dists += [(("agentic", k), getattr(w.agentic, k)) for k in
                  ("turns", "first_prompt_tokens", "append_tokens", "reply_tokens", "tool_s")]
    for key, d in dists:
        if d is not None and d.dist == "empirical":
            yield ("workload",) + (key if isinstance(key, tuple) else (key,)) + ("file",), d


def check_files(loaded: Loaded, pt: Point, seen: set) -> list[Problem]:
    """Problems of the trace and empirical-distribution files a point reads (each file and
    column once): a missing file at the scenario's key, a bad row at the file's line."""
    from planner.plan.inputs import find, read_trace, sampler
    out: list[Problem] = []
    for path, d in _file_refs(pt.scenario):
        file = pt.scenario.workload.arrival.trace if d == "trace" else d.file
        key = (file, "trace" if d == "trace" else (d.column, type(d).__name__))
        if key in seen:
            continue
        seen.add(key)
        if find(file, loaded.base_dir) is None:
            out.append(pt_loc(loaded, pt).problem(path, "file not found", file, True))
            continue
        try:
            read_trace(file, loaded.base_dir) if d == "trace" else sampler(d, loaded.base_dir)
        except ConfigError as e:
            out.extend(e.problems)
    return out


def _group_index(sc: Scenario) -> dict[str, int]:
    """Group name -> its index (the first group of that name)."""
    out: dict[str, int] = {}
    for i, g in enumerate(sc.sweep):
        out.setdefault(g.name, i)
    return out


def pt_loc(loaded: Loaded, pt: Point, gi: int | None = None) -> Located:
    """A Located whose marks for the swept paths point at the axis values that set them: an
    overlay on the file's marks, so its cost does not grow with the size of the file."""
    loc = loaded.loc
    if not pt.values or pt.group == "run":
        return loc
    marks, keys = ChainMap({}, loc.value_marks), ChainMap({}, loc.key_marks)
    if gi is None:
        gi = next(i for i, g in enumerate(loaded.scenario.sweep) if g.name == pt.group)
    for axis, value in pt.values.items():
        vals = loaded.scenario.sweep[gi].axes.get(axis, [])  # (another group of the same name: an error)
        j = vals.index(value) if value in vals else 0
        ax = ("sweep", gi, "axes", axis)
        target = tuple(axis.split("."))
        marks[target] = loc.value_marks.get(ax + (j,), loc.where(ax))
        keys[target] = loc.key_marks.get(ax, loc.where(ax, key=True))
        for sub in inner_paths(value):  # a mapping value ({weights: fp8}): its keys' own lines
            src = ax + (j,) + sub
            if src in loc.value_marks:
                marks[target + sub] = loc.value_marks[src]
            if src in loc.key_marks:
                keys[target + sub] = loc.key_marks[src]
    return Located(loc.data, loc.file, marks, keys)


def _expand(loaded: Loaded, problems: list[Problem]) -> list[Point]:
    sc, loc = loaded.scenario, loaded.loc
    base = {k: v for k, v in loc.data.items() if k != "sweep"}
    points: list[Point] = []
    seen: set = set()  # files checked (check_files)
    for gi, g in enumerate(sc.sweep):
        bad = [a for a in g.axes if a.split(".")[0] in ("sweep", "name") or not a.split(".")[0]]
        for a in bad:
            problems.append(loc.problem(("sweep", gi, "axes", a), f"cannot sweep '{a}'", key=True))
        if bad or not g.axes:  # (no axes: a group with problems of its own)
            continue
        bad_skip = _bad_skips(loc, gi, g, problems)  # the group's points are still checked
        if bad_skip:
            g = g.model_copy(update={"skip": [r for i, r in enumerate(g.skip) if i not in bad_skip]})
        names = list(g.axes)
        combos = zip(*g.axes.values()) if g.mode == "zip" else itertools.product(*g.axes.values())
        for combo in combos:
            values = dict(zip(names, combo))
            if g.skipped(values):
                continue
            raw = copy.deepcopy(base)
            for a, v in zip(names, combo):
                _set(raw, tuple(a.split(".")), v)
            tmp = Point(len(points), g.name, values, sc, "")
            loc_pt = pt_loc(loaded, tmp, gi)
            try:
                ps = validate(Scenario, loc_pt, raw)
            except ConfigError as e:
                problems.extend(e.problems + _past_schema(loaded, raw, loc_pt, tmp, seen))
                continue
            points.append(Point(len(points), g.name, values, ps, config_hash(ps)))
    return points


def _bad_skips(loc: Located, gi: int, g, problems: list[Problem]) -> list:
    """Skip entries must name the group's axes and values those axes take (else they silently do nothing)."""
    bad = []
    for i, rule in enumerate(g.skip):
        where = ("sweep", gi, "skip", i)
        if not rule:
            bad.append(i)
            problems.append(loc.problem(where, "empty skip entry (it would drop every combination)"))
        for axis, want in rule.items():
            if axis not in g.axes:
                bad.append(i)
                problems.append(loc.problem(where + (axis,), f"not an axis of group '{g.name}'"
                                            f"{did_you_mean(axis, list(g.axes))}", key=True))
            elif not any(skip_matches(want, v) for v in g.axes[axis]):
                bad.append(i)
                problems.append(loc.problem(where + (axis,), "matches none of the axis's values", want, True))
    return bad


def expand(loaded: Loaded) -> list[Point]:
    """All sweep points (the base scenario alone when it has no sweep), as validated by load."""
    return list(loaded.points)


def override(loaded: Loaded, sets: list[str]) -> Point:
    """The base scenario (sweep ignored) with ``key.path=value`` overrides, values read as YAML."""
    raw = copy.deepcopy({k: v for k, v in loaded.loc.data.items() if k != "sweep"})
    values, problems = {}, []
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key or key.split(".")[0] in ("sweep", "name"):
            problems.append(Problem("--set", None, None, item, "expected key.path=value (not sweep or name)"))
            continue
        try:  # read as a scenario file reads it (1e3 is a number, duplicate keys are errors)
            value = load_text(text, "--set").data if text.strip() else None
        except ConfigError as e:
            problems.append(Problem("--set", None, None, key, "value is not valid YAML: "
                                    + "; ".join(q.message for q in e.problems)))
            continue
        _set(raw, tuple(key.split(".")), value)
        values[key] = value
    if problems:
        raise _every(problems)
    loc = Located(raw, loaded.loc.file, dict(loaded.loc.value_marks), dict(loaded.loc.key_marks))
    for key in values:  # errors on overridden keys name the flag, not a file line
        for marks in (loc.value_marks, loc.key_marks):
            marks.pop(tuple(key.split(".")), None)
    try:
        sc = validate(Scenario, loc, raw).model_copy(update={"sweep": []})
    except ConfigError as e:  # the names and files too, in the same run
        found = e.problems + _past_schema(loaded, raw, loc, Point(0, "run", values, None, ""), set())
        raise _every([_flag(p, values) for p in found]) from None
    pt, found = _resolve(loaded, Point(0, "run", values, sc, config_hash(sc)), loc, set(), strict=True)
    if found:
        raise _every([_flag(p, values) for p in found])
    return pt


def _flag(p: Problem, values: dict) -> Problem:
    hit = next((k for k in values if p.path == k or p.path.startswith(k + ".")), None)
    return Problem("--set", None, None, p.path, p.message, p.got, p.has_got) if hit else p
