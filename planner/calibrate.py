"""Fit the step-time model's named parameters to published measurements, and say how well
the fit predicts points it never saw.

Data: ``hardware_specs/calibration.csv``, one row per published figure (date, source,
configuration, metric, value) with a ``role``:
- ``calibrate``: the fit may use it;
- ``validate``: never fitted: predicted with the full fit and reported as held out;
- ``reference``: shown, not predicted (an undisclosed model, a figure without a shape).

Rows are fitted per *family*: hardware that shares silicon and software stack shares the
parameters (H100 and H200; B200 and GB200 NVL72), written to the family head's spec file,
which the others extend. Each family has a fixed list of named parameters (``FAMILIES``);
a fit is scipy's least_squares on log(predicted / measured) in log-parameter space.

Held out: every calibrate row is also predicted by a fit that did not see it: leave-one-out
when a family has at most ``LOO_MAX`` calibrate rows, else ``FOLDS``-fold cross-validation
(rows assigned to folds by a fixed rule, so the report is reproducible). Validate rows
count as held out too. The spread of held-out measured/predicted ratios per family gives
the uncertainty band written to the spec (``uncertainty``).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from . import catalog
from .analytic import Config, build_point
from .config.errors import ConfigError, Problem
from .config.schema import HardwareSpec, SpecDecode
from .config.yamlio import load_file
from .hardware import Infeasible, resolve
from .perf import StepModel

COLUMNS = ("date", "source", "hardware", "count", "model", "precision", "kv_precision", "metric", "value",
           "batch", "context", "prompt", "output", "software", "spec_draft_tokens", "spec_acceptance",
           "spec_draft_layers", "spec_draft_params", "attention_parallel", "role", "notes")
METRICS = {"decode_tok_s_per_user", "single_stream_tok_s", "aggregate_tok_s", "ttft_s", "tpot_s"}
ROLES = ("calibrate", "validate", "reference")

# parameter name -> (key path in the spec file, bounds). ``name@profile`` puts a latency in
# that software profile instead of the spec's own ``latency`` section.
PARAMS = {
    "layer_base": (("latency", "layer_base"), (1e-8, 1e-3)),
    "layer_per_khidden": (("latency", "layer_per_khidden"), (1e-10, 1e-4)),
    "layer_dense": (("latency", "layer_dense"), (1e-8, 1e-3)),
    "layer_moe": (("latency", "layer_moe"), (1e-8, 2e-3)),
    "allreduce": (("latency", "allreduce"), (1e-7, 1e-4)),
    "step_overhead": (("latency", "step_overhead"), (1e-7, 1e-1)),
    "memory.efficiency": (("memory", "efficiency"), (0.2, 1.0)),
    "compute.efficiency": (("compute", "efficiency"), (0.05, 1.0)),
    "compute.decode_efficiency": (("compute", "decode_efficiency"), (0.05, 1.0)),
    "ep_imbalance": (("scale_up", "ep_imbalance"), (1.0, 2.0)),
    "memory.expert_efficiency": (("memory", "expert_efficiency"), (0.1, 1.0)),
    "compute.expert_efficiency": (("compute", "expert_efficiency"), (0.05, 1.0)),
    "compute.fp8_achievable": (("compute", "fp8_achievable"), (0.2, 1.0)),
    "compute.fp4_achievable": (("compute", "fp4_achievable"), (0.2, 1.0)),
    "clock": (("compute", "cores", "clock"), (1.0e9, 2.0e9)),  # the physical range
    "io.latency": (("io", "latency"), (1e-7, 1e-4)),
}


@dataclass(frozen=True)
class Family:
    head: str  # the spec file the fitted values are written to
    members: tuple[str, ...]  # hardware names whose rows the fit uses (they extend the head)
    params: tuple[str, ...]
    group: str  # reporting group: gpu, wafer, sram-chip


FAMILIES = (
    Family("h100", ("h100", "h200"), ("layer_dense", "layer_moe", "allreduce", "memory.efficiency",
                                      "memory.expert_efficiency", "compute.decode_efficiency", "compute.efficiency",
                                      "compute.expert_efficiency", "compute.fp8_achievable", "ep_imbalance"),
           "gpu"),
    Family("b200", ("b200", "gb200-nvl72"), ("layer_dense", "layer_moe", "allreduce", "memory.efficiency",
                                             "memory.expert_efficiency", "compute.decode_efficiency",
                                             "compute.efficiency", "compute.expert_efficiency",
                                             "compute.fp8_achievable", "compute.fp4_achievable", "ep_imbalance"),
           "gpu"),
    Family("cs3", ("cs3",), ("layer_per_khidden@launch-2024-08", "io.latency", "clock", "step_overhead"),
           "wafer"),
    Family("groq-lpu", ("groq-lpu",), ("layer_base", "compute.decode_efficiency"), "sram-chip"),
)
LOO_MAX = 40
OFFLINE_MAX_BATCH = 2048  # rows with no stated batch (offline max throughput): the engines' usual cap
ENGINE_CHUNK = 8192  # vLLM / SGLang / TensorRT-LLM default prefill chunk (max batched tokens)
FOLDS = 10


def family_of(hardware: str) -> Family | None:
    return next((f for f in FAMILIES if hardware in f.members), None)


def default_paths() -> list[Path]:
    """The shipped calibration files: calibration.csv (published measurements) and any
    calibration_*.csv beside it (generated grids, e.g. calibration_aic.csv)."""
    d = catalog.hardware_dir()
    return [d / "calibration.csv", *sorted(d.glob("calibration_*.csv"))]


@dataclass(frozen=True)
class Point:
    row: int
    date: str
    source: str
    hardware: str
    count: int | None
    model: str
    precision: str
    kv_precision: str | None
    metric: str
    value: float
    batch: int | None  # None: as many sequences as fit (an offline max-throughput run)
    context: int
    prompt: int
    output: int
    software: str | None
    spec: SpecDecode | None
    role: str
    notes: str = ""
    attention_parallel: str = "dp"
    file: str = ""

    @property
    def ref(self) -> str:
        """Where the row is: file name and line, unique across files."""
        return f"{Path(self.file).name}:{self.row}"

    @property
    def evaluable(self) -> bool:
        return self.role != "reference"


OPTIONAL = {"spec_draft_layers", "spec_draft_params", "attention_parallel"}


def read_points(path: Path | list[Path] | None = None) -> list[Point]:
    """Calibration rows of one file or several (default: the shipped ones), validated, with
    file and row numbers in errors."""
    paths = default_paths() if path is None else [Path(p) for p in (path if isinstance(path, list) else [path])]
    problems, out = [], []
    for path in paths:
        try:
            fh = path.open(newline="", encoding="utf-8")
        except OSError as e:
            raise ConfigError([Problem(str(path), None, None, "", f"cannot read: {e}")]) from None
        with fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL]
            if missing:
                raise ConfigError([Problem(str(path), 1, 1, "", f"missing columns: {', '.join(missing)}")])
            for n, r in enumerate(reader, start=2):
                try:
                    out.append(_point(n, {**{c: "" for c in OPTIONAL}, **r}, str(path)))
                except (ValueError, KeyError) as e:
                    problems.append(Problem(str(path), n, 1, "", str(e)))
    if problems:
        raise ConfigError(problems)
    return out


def _int(v: str, default=None):
    return int(float(v)) if v.strip() else default


def _point(n: int, r: dict, file: str = "") -> Point:
    if r["metric"] not in METRICS:
        raise ValueError(f"metric {r['metric']!r} not one of {sorted(METRICS)}")
    if r["role"] not in ROLES:
        raise ValueError(f"role {r['role']!r} not one of {', '.join(ROLES)}")
    value = float(r["value"])
    if not value > 0:
        raise ValueError(f"value must be > 0 (got {value})")
    spec = None
    if r["spec_draft_tokens"].strip():
        spec = SpecDecode(draft_tokens=int(r["spec_draft_tokens"]), acceptance_rate=float(r["spec_acceptance"]),
                          draft_layers=_int(r["spec_draft_layers"], 1),
                          draft_params=float(r["spec_draft_params"]) if r["spec_draft_params"].strip() else None)
    prompt, output = _int(r["prompt"], 1024), _int(r["output"], 1024)
    return Point(n, r["date"], r["source"], r["hardware"], _int(r["count"]), r["model"], r["precision"],
                 r["kv_precision"].strip() or None, r["metric"], value, _int(r["batch"]),
                 _int(r["context"], prompt + output), prompt, output, r["software"].strip() or None, spec,
                 r["role"], r["notes"], _parallel(r["attention_parallel"]), file)


def _parallel(v: str) -> str:
    v = v.strip() or "dp"
    if v not in ("dp", "tp"):
        raise ValueError(f"attention_parallel {v!r} not one of dp, tp")
    return v


# ---------------------------------------------------------------- parameters in a spec
def _path(name: str) -> tuple[str, ...]:
    base, _, profile = name.partition("@")
    keys = PARAMS[base][0]
    return ("software_profiles", profile, keys[1]) if profile else keys


def _set(obj, keys: tuple[str, ...], value):
    """``obj`` (a frozen pydantic model or dict) with ``keys`` set to ``value``."""
    k, rest = keys[0], keys[1:]
    if isinstance(obj, dict):
        return {**obj, k: _set(obj[k], rest, value) if rest else value}
    return obj.model_copy(update={k: _set(getattr(obj, k), rest, value) if rest else value})


def _get(obj, keys: tuple[str, ...]):
    for k in keys:
        obj = obj[k] if isinstance(obj, dict) else getattr(obj, k)
    return obj


def with_params(spec: HardwareSpec, values: dict[str, float]) -> HardwareSpec:
    for name, v in values.items():
        spec = _set(spec, _path(name), v)
    return spec


def current_value(spec: HardwareSpec, name: str) -> float:
    v = _get(spec, _path(name))
    if v is None and name == "compute.decode_efficiency":
        v = spec.compute.efficiency
    if v is None and name == "memory.expert_efficiency":
        v = spec.memory.efficiency
    return float(v)


# ---------------------------------------------------------------- prediction
@dataclass
class _Prepared:
    """One point's shape and placement, built once: fitted parameters move neither."""

    point: Point
    cfg: Config
    built: object


def _config(p: Point, spec: HardwareSpec) -> Config:
    return Config(catalog.load_model(p.model), spec, count=p.count, weights=p.precision, kv=p.kv_precision,
                  context=p.context, prompt=p.prompt, output=p.output, batch=p.batch or 1, software=p.software,
                  spec_decode=p.spec, prefill_chunk=max(p.prompt, 1), mla_attention=p.attention_parallel)


def prepare(p: Point, spec: HardwareSpec) -> _Prepared:
    cfg = _config(p, spec)
    try:
        built = build_point(cfg)
    except Infeasible as e:
        raise ValueError(f"calibration row {p.row} ({p.hardware} {p.model}) does not fit: {e}") from None
    if p.batch is not None and p.batch > built.placement.max_concurrent:
        raise ValueError(f"calibration row {p.row}: batch {p.batch} > {built.placement.max_concurrent} "
                         f"sequences that fit on {built.placement.devices} x {p.hardware}")
    return _Prepared(p, cfg, built)


def predict_prepared(pp: _Prepared, spec: HardwareSpec) -> float:
    """The row's metric under ``spec`` (fitted values applied), reusing the placement."""
    p, cfg, b = pp.point, pp.cfg, pp.built
    dev = resolve(spec, None, 0, p.software)
    sm = StepModel(b.shape, b.placement, dev, cfg.weights, cfg.kv_precision, cfg.mode, cfg.spec_decode,
                   cfg.microbatches)
    batch = p.batch if p.batch is not None else min(b.placement.max_concurrent, OFFLINE_MAX_BATCH)
    if p.metric == "ttft_s":
        if batch > 1:  # several prompts prefilled together (e.g. one per attention data-parallel rank)
            return sm.prefill_round(p.prompt, 0, batch)[1]
        return sm.ttft_s(p.prompt, 0, cfg.prefill_chunk)
    mean_ctx = min(p.context, p.prompt + p.output / 2)
    if p.metric == "tpot_s":  # a static batch of pure decode steps (AIConfigurator's TPOT)
        r = sm.decode_round(batch, mean_ctx)
        return r.round_s / r.accepted_tokens
    if p.metric == "single_stream_tok_s":
        r = sm.decode_round(1, mean_ctx)
        return r.accepted_tokens / r.round_s
    # serving: the others' prefills interleave, in the engines' usual 8,192-token chunks
    _, mixed = sm.steady_round(batch, mean_ctx, p.prompt, p.output, ENGINE_CHUNK)
    per_user = mixed.accepted_tokens / mixed.round_s
    return per_user if p.metric == "decode_tok_s_per_user" else per_user * batch


def predict(p: Point, spec: HardwareSpec) -> float:
    return predict_prepared(prepare(p, spec), spec)


# ---------------------------------------------------------------- fitting
@dataclass
class Prediction:
    point: Point
    shipped: float  # with the spec files as they are
    fitted: float  # with this fit's parameters (in sample for calibrate rows)
    held_out: float | None  # by a fit that did not see the row (validate rows: = fitted)

    @property
    def error(self) -> float:
        return self.fitted / self.point.value - 1

    @property
    def held_out_error(self) -> float | None:
        return None if self.held_out is None else self.held_out / self.point.value - 1

    def cells(self) -> dict[str, str]:
        """The row as the reports print it (terminal table and Markdown)."""
        p = self.point
        return {"ref": p.ref, "date": p.date, "role": p.role, "model": p.model, "precision": p.precision,
                "hardware": p.hardware, "devices": f"{p.hardware}{' x' + str(p.count) if p.count else ''}",
                "metric": p.metric, "batch": "max" if p.batch is None else str(p.batch),
                "measured": f"{p.value:.4g}", "predicted": f"{self.fitted:.4g}", "error": f"{self.error:+.0%}",
                "held_out": "-" if self.held_out is None else f"{self.held_out_error:+.0%}"}


@dataclass
class FamilyFit:
    family: Family
    params: dict[str, tuple[float, float]]  # name -> (shipped, fitted)
    predictions: list[Prediction] = field(default_factory=list)
    cv: str = ""  # "leave-one-out" or "10-fold"

    @property
    def calibrate_points(self) -> int:
        return sum(1 for x in self.predictions if x.point.role == "calibrate")

    @property
    def dof(self) -> int:
        return self.calibrate_points - len(self.params)

    @property
    def band(self) -> tuple[float, float]:
        """(10th, 90th) percentile of held-out measured / predicted *speed* (a TPOT ratio is
        inverted; TTFT rows are left out): multipliers on predicted per-user speed."""
        r = [(x.held_out / x.point.value) if x.point.metric == "tpot_s" else (x.point.value / x.held_out)
             for x in self.predictions if x.held_out is not None and x.point.metric != "ttft_s"]
        if not r:
            return 1.0, 1.0
        return min(1.0, float(np.quantile(r, 0.1))), max(1.0, float(np.quantile(r, 0.9)))


def _fit_values(family: Family, specs: dict[str, HardwareSpec], prepared: list[_Prepared]) -> np.ndarray:
    """Least-squares fit of the family's parameters on ``prepared``; log-values."""
    head = specs[family.head]
    names = family.params
    lo = np.log([PARAMS[n.partition("@")[0]][1][0] for n in names])
    hi = np.log([PARAMS[n.partition("@")[0]][1][1] for n in names])
    cur = np.array([current_value(head, n) for n in names])
    x0 = np.clip(np.log(np.where(cur > 0, cur, 1.0)), lo + 1e-9, hi - 1e-9)
    x0 = np.where(cur > 0, x0, (lo + hi) / 2)  # an unset (zero) value starts mid-range

    def resid(x):
        vals = dict(zip(names, np.exp(x)))
        fitted = {h: with_params(s, vals) for h, s in specs.items()}
        return [math.log(predict_prepared(pp, fitted[pp.point.hardware]) / pp.point.value) for pp in prepared]

    # a weak pull towards the shipped values keeps parameters the data cannot see where they were
    def objective(x):
        return np.concatenate([resid(x), 1e-3 * (x - x0)])

    return least_squares(objective, x0, bounds=(lo, hi), diff_step=1e-3, xtol=1e-6, ftol=1e-6).x


def _folds(n: int) -> list[list[int]]:
    if n <= LOO_MAX:
        return [[i] for i in range(n)]
    return [list(range(k, n, FOLDS)) for k in range(FOLDS)]


def fit(points: list[Point], families=FAMILIES, cross_validate: bool = True) -> list[FamilyFit]:
    out = []
    for fam in families:
        rows = [p for p in points if p.hardware in fam.members and p.evaluable]
        cal = [p for p in rows if p.role == "calibrate"]
        if not cal:
            continue
        specs = {h: catalog.load_hardware(h) for h in fam.members}
        prep = {p.ref: prepare(p, specs[p.hardware]) for p in rows}
        xs = _fit_values(fam, specs, [prep[p.ref] for p in cal])
        vals = dict(zip(fam.params, np.exp(xs)))
        fitted = {h: with_params(s, vals) for h, s in specs.items()}
        held: dict[int, float] = {}
        if cross_validate and len(cal) > len(fam.params):
            for fold in _folds(len(cal)):
                train = [prep[p.ref] for i, p in enumerate(cal) if i not in fold]
                xf = _fit_values(fam, specs, train)
                fs = {h: with_params(s, dict(zip(fam.params, np.exp(xf)))) for h, s in specs.items()}
                for i in fold:
                    held[cal[i].ref] = predict_prepared(prep[cal[i].ref], fs[cal[i].hardware])
        ff = FamilyFit(fam, {n: (current_value(specs[fam.head], n), float(v)) for n, v in vals.items()},
                       cv=("leave-one-out" if len(cal) <= LOO_MAX else f"{FOLDS}-fold") if held else "none")
        for p in rows:
            f_val = predict_prepared(prep[p.ref], fitted[p.hardware])
            ho = held.get(p.ref) if p.role == "calibrate" else f_val
            ff.predictions.append(Prediction(p, predict_prepared(prep[p.ref], specs[p.hardware]), f_val, ho))
        out.append(ff)
    return out


def summary(fits: list[FamilyFit]) -> list[dict]:
    """Per reporting group and overall: points, parameters, median/max |error| in and out of sample."""
    groups: dict[str, list[FamilyFit]] = {}
    for f in fits:
        groups.setdefault(f.family.group, []).append(f)
    rows = []
    for name, fs in [*groups.items(), ("overall", fits)]:
        preds = [x for f in fs for x in f.predictions]
        ins = [abs(x.error) for x in preds if x.point.role == "calibrate"]
        out = [abs(x.held_out_error) for x in preds if x.held_out is not None]
        rows.append({"group": name, "families": ", ".join(f.family.head for f in fs),
                     "calibrate_points": len(ins), "parameters": sum(len(f.params) for f in fs),
                     "held_out_points": len(out),
                     "models": len({x.point.model for x in preds if x.held_out is not None}),
                     "in_sample_median": float(np.median(ins)) if ins else math.nan,
                     "held_out_median": float(np.median(out)) if out else math.nan,
                     "held_out_max": float(np.max(out)) if out else math.nan})
    return rows


def markdown(fits: list[FamilyFit]) -> str:
    """Every predicted point as a Markdown table (the README's calibration table)."""
    out = ["| file:row | date | hardware | model | precision | metric | batch | measured | predicted | error | held out | role |",
           "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for f in fits:
        for x in f.predictions:
            c = x.cells()
            out.append(f"| {c['ref']} | {c['date']} | {c['devices']} | {c['model']} | {c['precision']} | "
                       f"{c['metric']} | {c['batch']} | {c['measured']} | {c['predicted']} | {c['error']} | "
                       f"{c['held_out']} | {'fit' if c['role'] == 'calibrate' else 'validation'} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- writing back
_VALUE = re.compile(r"^(\s*)([-+0-9.eE]+(?:\s*[A-Za-zµ/]+)?)(\s*(?:#.*)?)$")


def _format(name: str, v: float) -> str:
    base = name.partition("@")[0]
    if base == "clock":
        return f"{v / 1e9:.4g} GHz"
    return f"{v * 1e6:.4g} us" if PARAMS[base][0][0] in ("latency", "io") else f"{v:.4g}"


def write_back(fits: list[FamilyFit]) -> list[str]:
    """Rewrite the fitted values and the uncertainty band in the family heads' YAML files in
    place (comments kept). Only values the file itself sets are rewritten."""
    changed = []
    for ff in fits:
        path = catalog.find("hardware", ff.family.head)
        edits = {_path(n): _format(n, after) for n, (_, after) in ff.params.items()}
        if ff.cv != "none":
            lo, hi = ff.band
            held = [x for x in ff.predictions if x.held_out is not None]
            edits[("uncertainty", "speed_low")] = f"{lo:.3g}"
            edits[("uncertainty", "speed_high")] = f"{hi:.3g}"
            edits[("uncertainty", "points")] = str(len(held))
            edits[("uncertainty", "median_abs_error")] = \
                f"{float(np.median([abs(x.held_out_error) for x in held])):.3g}"
        _rewrite(path, edits)
        changed.append(str(path))
    return changed


def _rewrite(path: Path, edits: dict[tuple, str]) -> None:
    loc = load_file(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for key_path, new in edits.items():
        if key_path not in loc.value_marks:
            raise ConfigError([Problem(str(path), None, None, ".".join(key_path),
                                       "fitted value is not set in this file; add it, then re-run")])
        line, col = loc.value_marks[key_path]
        text = lines[line - 1]
        head, rest = text[: col - 1], text[col - 1:]
        m = _VALUE.match(rest.rstrip("\n"))
        if not m:
            raise ConfigError([Problem(str(path), line, col, ".".join(key_path), "cannot rewrite this value")])
        lines[line - 1] = head + new + m.group(3) + ("\n" if text.endswith("\n") else "")
    path.write_text("".join(lines), encoding="utf-8")


