"""Calibration data: the CSV columns and roles, the hardware families and their named
parameters, and published points read from ``hardware_specs/calibration*.csv``."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path


from planner import catalog
from planner.config.errors import ConfigError, Problem
from planner.config.schema import PRECISIONS, HardwareSpec, SpecDecode
from planner.physics.placement import data_parallel_attention
from planner.physics.point import Config

COLUMNS = ("date", "source", "hardware", "count", "model", "precision", "kv_precision", "metric", "value",
           "batch", "requests", "context", "prompt", "output", "software", "spec_draft_tokens", "spec_acceptance",
           "spec_draft_layers", "spec_draft_params", "attention_parallel", "routing", "role", "notes")
METRICS = {"decode_tok_s_per_user", "single_stream_tok_s", "aggregate_tok_s", "ttft_s", "client_ttft_s", "tpot_s"}
TTFT_METRICS = ("ttft_s", "client_ttft_s")  # not speeds: left out of the bands
ROLES = ("calibrate", "validate", "reference")

# parameter name -> (key path in the spec file, bounds). ``name@profile`` puts a latency in
# that software profile instead of the spec's own ``latency`` section.
PARAMS = {
    "layer_base": (("latency", "layer_base"), (1e-8, 1e-3)),
    "layer_per_khidden": (("latency", "layer_per_khidden"), (1e-10, 1e-4)),
    "layer_per_gb": (("latency", "layer_per_gb"), (1e-9, 1e-3)),
    "layer_dense": (("latency", "layer_dense"), (1e-8, 1e-3)),
    "layer_moe": (("latency", "layer_moe"), (1e-8, 2e-3)),
    "layer_mla": (("latency", "layer_mla"), (1e-8, 1e-3)),
    "alltoall": (("latency", "alltoall"), (1e-7, 2e-4)),
    "step_overhead": (("latency", "step_overhead"), (1e-7, 1e-1)),
    "client_ttft_overhead": (("latency", "client_ttft_overhead"), (1e-4, 1.0)),
    "memory.efficiency": (("memory", "efficiency"), (0.2, 1.0)),
    "compute.efficiency": (("compute", "efficiency"), (0.05, 1.0)),
    "compute.decode_efficiency": (("compute", "decode_efficiency"), (0.05, 1.0)),
    "compute.decode_half_rows": (("compute", "decode_half_rows"), (1.0, 8192.0)),
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
    Family("h100", ("h100", "h200"), ("layer_dense", "layer_moe", "alltoall",
                                      "memory.expert_efficiency", "compute.decode_half_rows", "compute.efficiency",
                                      "compute.expert_efficiency", "compute.fp8_achievable", "ep_imbalance"),
           "gpu"),
    Family("b200", ("b200", "gb200-nvl72"), ("layer_dense", "layer_moe", "layer_mla", "alltoall",
                                             "memory.expert_efficiency", "compute.decode_half_rows",
                                             "compute.efficiency", "compute.expert_efficiency",
                                             "compute.fp8_achievable", "compute.fp4_achievable", "ep_imbalance",
                                             "client_ttft_overhead"),
           "gpu"),
    Family("cs3", ("cs3",), ("layer_per_gb@launch-2024-08", "io.latency", "step_overhead"),
           "wafer"),
    Family("groq-lpu", ("groq-lpu",), ("layer_base", "io.latency"), "sram-chip"),
)
LOO_MAX = 40
# Rows with no stated batch are offline maxima from trtllm-bench (every one in the shipped file):
# its heuristic (tensorrt_llm/bench/tuning/heuristics.py, finetune_setting) runs min(the requests
# the KV holds, 4096) for the checkpoints it tunes (16-bit, FP8, NVFP4) and TorchLlmArgs' default
# max_batch_size, 2048, for the rest (gpt-oss's MXFP4)
OFFLINE_MAX_BATCH = 4096
OFFLINE_DEFAULT_BATCH = 2048
OFFLINE_TUNED = ("fp16", "bf16", "fp8", "nvfp4")


def offline_batch_cap(precision: str) -> int:
    """The batch an offline-maximum row ran at most per scheduler (the KV bounds it too)."""
    return OFFLINE_MAX_BATCH if precision in OFFLINE_TUNED else OFFLINE_DEFAULT_BATCH


KV_MANAGER_V1_UNTIL = "2026-07"  # TensorRT-LLM moved gpt-oss to KVCacheManagerV2 (pull request #16942)


def offline_batch(p: Point, max_concurrent: int, shape, devices: int) -> int:
    """The concurrency of an offline-maximum row (no stated batch), as TensorRT-LLM sets it:
    - its KV cache manager V1 (rows dated up to ``KV_MANAGER_V1_UNTIL``) gives a sliding-window
      layer as many blocks per sequence as a full-attention one ("SWA allocates blocks
      linearly, and we need as many blocks as full attention", kvCacheManager.cpp), so the
      requests it holds are the planner's ``max_concurrent`` x (windowed / full KV bytes);
      V2 sizes the window's pool apart, as the planner's own KV model does;
    - the batch cap applies per scheduler, and the perf-overview recipes run MoE models with
      attention data parallelism: one scheduler per GPU (dense models: one);
    - at most the run's requests (all queued at once)."""
    windowed = float(shape.kv_bytes_per_sequence("bf16", p.context).sum()) \
        / float(shape.kv_bytes_per_token("bf16").sum() * p.context) if p.date[:7] <= KV_MANAGER_V1_UNTIL else 1.0
    held = math.floor(max_concurrent * windowed + 1e-9)
    dp = data_parallel_attention(shape.spec.attention, p.attention_parallel or Config.mla_attention,
                                 p.attention_parallel or Config.gqa_attention)
    schedulers = devices if shape.experts and dp else 1
    return max(1, min(held, schedulers * offline_batch_cap(p.precision), p.requests or held))


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
    attention_parallel: str = ""  # "dp" or "tp"; "": the model's default (MLA dp, GQA tp)
    file: str = ""
    requests: int | None = None  # a finite run's requests, all queued at once (None: steady state)
    routing: str = ""  # "": the serving engine's own router; "balanced": every expert the same load

    @property
    def ref(self) -> str:
        """Where the row is: file name and line, unique across files."""
        return f"{Path(self.file).name}:{self.row}"

    @property
    def evaluable(self) -> bool:
        return self.role != "reference"


OPTIONAL = {"spec_draft_layers", "spec_draft_params", "attention_parallel", "requests", "routing"}
ROUTINGS = ("", "balanced")


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
            try:  # a file that is not UTF-8 text or not CSV (a NUL byte) is one located line, not a traceback
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL]
                if missing:
                    raise ConfigError([Problem(str(path), 1, 1, "", f"missing columns: {', '.join(missing)}")])
                for n, r in enumerate(reader, start=2):
                    try:
                        out.append(parse_row(n, {**{c: "" for c in OPTIONAL}, **r}, str(path)))
                    except (ValueError, KeyError, TypeError, AttributeError) as e:
                        problems.append(Problem(str(path), n, 1, "", str(e)))
            except (UnicodeDecodeError, csv.Error) as e:
                raise ConfigError([Problem(str(path), reader.line_num or 1, 1, "", f"not a UTF-8 CSV file: {e}")]) \
                    from None
    if problems:
        raise ConfigError(problems)
    return out


def _int(v: str, default=None):
    if not v.strip():
        return default
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"not a finite number: {v!r}")
    return int(f)


def parse_row(n: int, r: dict, file: str = "") -> Point:
    short = [c for c in COLUMNS if r.get(c) is None and c not in OPTIONAL]
    if short:
        raise ValueError(f"row has too few fields (no {', '.join(short[:3])}{', ...' if len(short) > 3 else ''})")
    if r["metric"] not in METRICS:
        raise ValueError(f"metric {r['metric']!r} not one of {sorted(METRICS)}")
    if r["role"] not in ROLES:
        raise ValueError(f"role {r['role']!r} not one of {', '.join(ROLES)}")
    value = float(r["value"])
    if not 0 < value < math.inf:
        raise ValueError(f"value must be > 0 and finite (got {value})")
    for c in ("precision", "kv_precision"):
        if r[c].strip() and r[c] not in PRECISIONS:
            raise ValueError(f"{c} {r[c]!r} not one of {', '.join(PRECISIONS)}")
    spec = None
    if r["spec_draft_tokens"].strip():
        spec = SpecDecode(draft_tokens=int(r["spec_draft_tokens"]), acceptance_rate=float(r["spec_acceptance"]),
                          draft_layers=_int(r["spec_draft_layers"], 1),
                          draft_params=float(r["spec_draft_params"]) if r["spec_draft_params"].strip() else None)
    prompt, output = _int(r["prompt"], 1024), _int(r["output"], 1024)
    count, batch, requests = _int(r["count"]), _int(r["batch"]), _int(r["requests"])
    for c, v in (("count", count), ("batch", batch), ("context", _int(r["context"])),
                 ("prompt", prompt), ("output", output), ("requests", requests)):
        if v is not None and v < 1:
            raise ValueError(f"{c} must be >= 1 (got {v})")
    return Point(n, r["date"], r["source"], r["hardware"], count, r["model"], r["precision"],
                 r["kv_precision"].strip() or None, r["metric"], value, batch,
                 _int(r["context"], prompt + output), prompt, output, r["software"].strip() or None, spec,
                 r["role"], r["notes"], _parallel(r["attention_parallel"]), file, requests, _routing(r["routing"]))


def _routing(v: str) -> str:
    v = v.strip()
    if v not in ROUTINGS:
        raise ValueError(f"routing {v!r} not one of: blank (the engine's router), balanced")
    return v


def _parallel(v: str) -> str:
    v = v.strip()
    if v not in ("", "dp", "tp"):
        raise ValueError(f"attention_parallel {v!r} not one of dp, tp")
    return v


# ---------------------------------------------------------------- parameters in a spec
def param_path(name: str) -> tuple[str, ...]:
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
        spec = _set(spec, param_path(name), v)
    return spec


def current_value(spec: HardwareSpec, name: str) -> float:
    v = _get(spec, param_path(name))
    if v is None and name == "compute.decode_half_rows":
        v = 64.0  # start: thin decode GEMMs at half efficiency by 64 rows
    if v is None and name == "compute.decode_efficiency":
        v = spec.compute.efficiency
    if v is None and name == "memory.expert_efficiency":
        v = spec.memory.efficiency
    return 0.0 if v is None else float(v)  # unset: the fit starts mid-range
