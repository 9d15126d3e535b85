"""Evaluate every point of a scenario's sweep and collect one flat row per point.

Data flow: scenario -> points -> (per point) Config -> analytic estimate -> users/replicas
-> economics -> row. Rows keep a stable column order: identity and swept values first,
then feasibility, then results, then provenance.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

import pandas as pd

from . import __version__
from .analytic import estimate
from .economics import costs
from .export import write_csv, write_json
from .hardware import Infeasible, resolve
from .scenario import Loaded, Point, expand, load, pt_loc, to_config

LEAD = ["point", "group"]
RESULT_ORDER = [
    "feasible", "reason", "bottleneck", "slo_pass", "model", "hardware", "device", "weights_precision",
    "kv_precision", "compute_mode", "context_tokens", "prompt_tokens", "output_tokens",
    "devices_per_replica", "replicas", "devices", "systems", "stages", "tp", "layers_per_stage",
    "layers_split", "concurrent_users", "batch_per_replica", "max_concurrent_sequences",
    "weight_bytes", "kv_bytes_per_token", "kv_bytes_per_seq", "capacity_bytes_per_device",
    "decode_tok_s_per_user", "single_stream_tok_s", "tpot_s", "ttft_s", "aggregate_tok_s",
    "input_tok_s", "accepted_tokens_per_step", "prefill_share", "round_s", "token_latency_s", "cycle_s",
    "time_pipeline_latency_s", "time_io_link_s", "time_compute_s", "time_memory_bw_s",
    "capex_usd", "power_kw", "facility_power_kw", "usd_per_h", "cost_usd_per_mtok_out",
    "cost_usd_per_mtok_in", "cost_usd_per_mtok_total", "tok_s_per_mw",
]
TAIL = ["config_hash", "seed"]


def evaluate(loaded: Loaded, pt: Point) -> dict:
    """One row for one point: analytic results, replicas for the users, costs, SLO verdict."""
    sc = pt.scenario
    cfg = to_config(loaded, sc, pt_loc(loaded, pt))
    users, fixed_replicas = sc.workload.concurrent_users, sc.deployment.replicas
    if users is not None and cfg.count is None:
        # fewest devices for the users: one pipeline holding them all stores the weights once
        cfg = dataclasses.replace(cfg, min_sequences=math.ceil(users / (fixed_replicas or 1)))
    row = {"point": pt.index, "group": pt.group, **axis_columns(pt.values)}
    est = estimate(cfg)
    row.update(est)
    row["feasible"] = bool(est["fits"])
    row.pop("fits", None)
    if row["feasible"]:
        per = est["max_concurrent_sequences"]
        if users is None:
            replicas = fixed_replicas or 1
            batch = per
        else:
            replicas = fixed_replicas or math.ceil(users / per)
            if users > replicas * per:
                row.update(feasible=False, bottleneck="sram_capacity" if cfg.hardware.kind == "wafer" else "hbm_capacity",
                           reason=f"{users} users need {math.ceil(users / per)} replicas of {per} sequences; "
                                  f"{replicas} configured")
            batch = math.ceil(users / replicas)
        if row["feasible"] and batch != est["batch"]:
            est = estimate(dataclasses.replace(cfg, batch=batch))
            row.update({k: v for k, v in est.items() if k != "fits"})
        row.update(devices_per_replica=est.get("devices"), replicas=replicas, batch_per_replica=batch,
                   concurrent_users=batch * replicas if users is None else users)
    if row["feasible"]:
        dev = resolve(cfg.hardware, cfg.bonded, cfg.bonded_layers, cfg.software)
        total = row["devices_per_replica"] * row["replicas"]
        agg = row["aggregate_tok_s"] * row["replicas"]
        row.update(devices=total, aggregate_tok_s=agg, input_tok_s=row["input_tok_s"] * row["replicas"])
        try:
            row.update(costs(dev, total, sc.economics, agg, row["input_tok_s"], row["prefill_share"]))
        except Infeasible as e:
            row.update(feasible=False, reason=str(e), bottleneck="unsupported")
    row["slo_pass"] = _slo(sc, row) if row["feasible"] else False
    row["config_hash"], row["seed"] = pt.config_hash, sc.seed
    return row


def axis_columns(values: dict) -> dict:
    """Swept values as columns; a mapping value (e.g. a precision pair) becomes one column per key."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(axis_columns({f"{k}.{kk}": vv for kk, vv in v.items()}))
        else:
            out[k] = v
    return out


def _slo(sc, row) -> bool:
    s = sc.slo
    checks = [(s.ttft_p99_s, row.get("ttft_s"), "le"), (s.tpot_p99_s, row.get("tpot_s"), "le"),
              (s.decode_tok_s_per_user_p50, row.get("decode_tok_s_per_user"), "ge")]
    ok = True
    for target, value, how in checks:
        if target is not None and value is not None:
            ok &= value <= target if how == "le" else value >= target
    return bool(ok)


def run(path: str | Path, out_dir: str | Path | None = None, quiet: bool = False) -> tuple[pd.DataFrame, Path]:
    """Evaluate every point of the scenario at ``path``; write results.csv and run.json."""
    started = time.time()
    loaded = load(path)
    points = expand(loaded)
    out = Path(out_dir) if out_dir else Path("outputs") / loaded.scenario.name
    rows = []
    progress = Progress(len(points), quiet)
    for pt in points:
        rows.append(evaluate(loaded, pt))
        progress.step()
    progress.done()
    axes = [c for pt in points for c in axis_columns(pt.values)]
    df = frame(rows, axes)
    write_csv(df, out / "results.csv")
    write_json({
        "tool": "wafer-planner", "version": __version__, "scenario": str(path),
        "scenario_sha256": _sha(Path(path)), "scenario_resolved": loaded.scenario.model_dump(mode="json"),
        "seed": loaded.scenario.seed, "points": len(rows), "feasible": int(df["feasible"].sum()),
        "started": _iso(started), "finished": _iso(time.time()), "wall_s": round(time.time() - started, 3),
    }, out / "run.json")
    return df, out


class Progress:
    """Points done and ETA on stderr: redrawn in place on a terminal, a line per 10% in logs."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.done_n, self.t0 = total, quiet, 0, time.time()
        self.tty = sys.stderr.isatty()
        self.next_pct = 10

    def step(self) -> None:
        self.done_n += 1
        if self.quiet:
            return
        pct = 100 * self.done_n / self.total
        if not self.tty and pct < self.next_pct and self.done_n != self.total:
            return
        self.next_pct = (int(pct) // 10 + 1) * 10
        el = time.time() - self.t0
        eta = el / self.done_n * (self.total - self.done_n)
        msg = f"[{self.done_n}/{self.total}] points, {el:.1f} s elapsed, ETA {eta:.1f} s"
        print(("\r" + msg) if self.tty else msg, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def frame(rows: list[dict], axes: list[str]) -> pd.DataFrame:
    """Rows -> DataFrame with a stable column order (unknown extra keys go before the tail)."""
    axes = list(dict.fromkeys(axes))
    cols = LEAD + axes + RESULT_ORDER
    extra = sorted({k for r in rows for k in r} - set(cols) - set(TAIL))
    return pd.DataFrame(rows, columns=cols + extra + TAIL)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
