"""Fit the step-time model's named latency/efficiency parameters to published measurements.

Data: ``hardware_specs/calibration.csv`` (one row per published figure, with date and
source). Rows sharing (hardware, software profile) form a group; the union of their ``fit``
column is the group's free parameters, fitted with scipy's least_squares on
log(predicted / measured) in log-parameter space (so every parameter stays positive).
Rows with an empty ``fit`` or an undisclosed model are reference-only.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from . import catalog
from .analytic import Config, estimate
from .config.errors import ConfigError, Problem
from .config.schema import HardwareSpec, SpecDecode
from .config.yamlio import load_file

# fit-column name -> (spec section, key, bounds)
PARAMS = {
    "layer_base": ("latency", "layer_base", (1e-8, 1e-3)),
    "layer_per_khidden": ("latency", "layer_per_khidden", (1e-9, 1e-3)),
    "allreduce": ("latency", "allreduce", (1e-7, 1e-3)),
    "step_overhead": ("latency", "step_overhead", (1e-7, 1e-1)),
    "memory.efficiency": ("memory", "efficiency", (0.05, 1.0)),
    "compute.efficiency": ("compute", "efficiency", (0.05, 1.0)),
}
COLUMNS = ("date", "source", "hardware", "count", "model", "precision", "metric", "value", "batch", "context",
           "prompt", "output", "software", "spec_draft_tokens", "spec_acceptance", "fit", "notes")
METRICS = {"decode_tok_s_per_user", "single_stream_tok_s", "aggregate_tok_s", "ttft_s"}


def default_path() -> Path:
    return catalog.hardware_dir() / "calibration.csv"


@dataclass(frozen=True)
class Point:
    row: int
    date: str
    source: str
    hardware: str
    count: int | None
    model: str
    precision: str
    metric: str
    value: float
    batch: int
    context: int
    prompt: int
    output: int
    software: str | None
    spec: SpecDecode | None
    fit: tuple[str, ...]
    notes: str = ""

    @property
    def evaluable(self) -> bool:
        return self.model != "undisclosed" and bool(self.precision)


def read_points(path: Path | None = None) -> list[Point]:
    """Calibration rows, validated with row numbers in errors."""
    path = Path(path) if path else default_path()
    problems, out = [], []
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(str(path), None, None, "", f"cannot read: {e}")]) from None
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError([Problem(str(path), 1, 1, "", f"missing columns: {', '.join(missing)}")])
        for n, r in enumerate(reader, start=2):
            try:
                out.append(_point(n, r))
            except (ValueError, KeyError) as e:
                problems.append(Problem(str(path), n, 1, "", str(e)))
    if problems:
        raise ConfigError(problems)
    return out


def _int(v: str, default=None):
    return int(float(v)) if v.strip() else default


def _point(n: int, r: dict) -> Point:
    fit = tuple(x for x in r["fit"].split(";") if x)
    bad = [x for x in fit if x not in PARAMS]
    if bad:
        raise ValueError(f"unknown fit parameter(s) {bad}; known: {', '.join(PARAMS)}")
    if r["metric"] not in METRICS:
        raise ValueError(f"metric {r['metric']!r} not one of {sorted(METRICS)}")
    value = float(r["value"])
    if value <= 0:
        raise ValueError(f"value must be > 0 (got {value})")
    spec = None
    if r["spec_draft_tokens"].strip():
        spec = SpecDecode(draft_tokens=int(r["spec_draft_tokens"]), acceptance_rate=float(r["spec_acceptance"]))
    return Point(n, r["date"], r["source"], r["hardware"], _int(r["count"]), r["model"], r["precision"],
                 r["metric"], value, _int(r["batch"], 1), _int(r["context"], 2048), _int(r["prompt"], 1024),
                 _int(r["output"], 1024), r["software"].strip() or None, spec, fit, r["notes"])


def with_params(spec: HardwareSpec, software: str | None, values: dict[str, float]) -> HardwareSpec:
    """``spec`` with fitted values put where they belong: the software profile for latencies
    of a named profile, else the spec's own section."""
    for name, v in values.items():
        section, key, _ = PARAMS[name]
        if software is not None and section == "latency":
            prof = spec.software_profiles[software].model_copy(update={key: v})
            spec = spec.model_copy(update={"software_profiles": {**spec.software_profiles, software: prof}})
        else:
            spec = spec.model_copy(update={section: getattr(spec, section).model_copy(update={key: v})})
    return spec


def current_value(spec: HardwareSpec, software: str | None, name: str) -> float:
    section, key, _ = PARAMS[name]
    if software is not None and section == "latency":
        v = getattr(spec.software_profiles[software], key)
        if v is not None:
            return v
    return getattr(getattr(spec, section), key)


def predict(p: Point, spec: HardwareSpec) -> float:
    cfg = Config(catalog.load_model(p.model), spec, count=p.count, weights=p.precision, context=p.context,
                 prompt=p.prompt, output=p.output, batch=p.batch, software=p.software, spec_decode=p.spec)
    row = estimate(cfg)
    if not row["fits"]:
        raise ValueError(f"calibration row {p.row} does not fit: {row['reason']}")
    return float(row[p.metric])


@dataclass
class GroupFit:
    hardware: str
    software: str | None
    params: dict[str, tuple[float, float]]  # name -> (before, after)
    points: list[tuple[Point, float, float]]  # (point, predicted before, predicted after)


def fit(points: list[Point]) -> list[GroupFit]:
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        if p.evaluable and p.fit:
            groups.setdefault((p.hardware, p.software), []).append(p)
    out = []
    for (hw, sw), pts in groups.items():
        spec = catalog.load_hardware(hw)
        names = sorted({n for p in pts for n in p.fit})
        x0 = np.log([current_value(spec, sw, n) for n in names])
        lo = np.log([PARAMS[n][2][0] for n in names])
        hi = np.log([PARAMS[n][2][1] for n in names])
        x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

        def resid(x):
            s = with_params(spec, sw, dict(zip(names, np.exp(x))))
            return [math.log(predict(p, s) / p.value) for p in pts]

        res = least_squares(resid, x0, bounds=(lo, hi), x_scale=1.0, diff_step=1e-4)
        fitted = with_params(spec, sw, dict(zip(names, np.exp(res.x))))
        out.append(GroupFit(hw, sw, {n: (float(np.exp(a)), float(np.exp(b))) for n, a, b in zip(names, x0, res.x)},
                            [(p, predict(p, spec), predict(p, fitted)) for p in pts]))
    return out


def check(points: list[Point]) -> list[tuple[Point, float]]:
    """Every evaluable point with the shipped defaults' prediction."""
    return [(p, predict(p, catalog.load_hardware(p.hardware))) for p in points if p.evaluable]


_SECONDS = re.compile(r"^(\s*)([-+0-9.eE]+(?:\s*[a-zµ]+)?)(\s*(?:#.*)?)$")


def write_back(fits: list[GroupFit]) -> list[str]:
    """Rewrite the fitted values in the hardware YAML files in place (comments kept).
    Returns the files changed. Only values the file itself sets are rewritten."""
    changed = []
    for gf in fits:
        path = catalog.find("hardware", gf.hardware)
        loc = load_file(path)
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for name, (_, after) in gf.params.items():
            section, key, _ = PARAMS[name]
            key_path = ("software_profiles", gf.software, key) if (gf.software and section == "latency") \
                else (section, key)
            if key_path not in loc.value_marks:
                raise ConfigError([Problem(str(path), None, None, ".".join(key_path),
                                           "fitted parameter is not set in this file; add it, then re-run")])
            line, col = loc.value_marks[key_path]
            text = lines[line - 1]
            head, rest = text[: col - 1], text[col - 1:]
            m = _SECONDS.match(rest.rstrip("\n"))
            new = f"{after * 1e6:.4g} us" if section == "latency" else f"{after:.4g}"
            if not m:
                raise ConfigError([Problem(str(path), line, col, ".".join(key_path), "cannot rewrite this value")])
            lines[line - 1] = head + new + m.group(3) + ("\n" if text.endswith("\n") else "")
        path.write_text("".join(lines), encoding="utf-8")
        if str(path) not in changed:
            changed.append(str(path))
    return changed
