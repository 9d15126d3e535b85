"""``plan report DIR``: the plots a planner would rather look at than read, and summary.md.

Reads only the sweep's CSVs and run.json (never re-runs anything), so a report can be made on
another machine from copied results. ``plan sweep`` calls it at the end; matplotlib is
imported lazily (sweeps/plots.py draws), so the rest of the package loads without it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from planner.sweeps import frontier, plots
from planner.sweeps.export import atomic_write_text


def _plt():
    from planner.sweeps.export import require
    require("matplotlib", "plan report needs matplotlib", "plots")
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _fmt(v, digits=3) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def summary_md(df: pd.DataFrame, best: pd.DataFrame, run: dict, images: list[Path],
               speed: pd.DataFrame | None = None) -> str:
    sc = run.get("scenario_resolved", {})
    slo = {k: v for k, v in sc.get("slo", {}).items() if v is not None}
    lines = [f"# {sc.get('name', 'sweep')}: summary", ""]
    if sc.get("description"):
        lines += [sc["description"], ""]
    lines += [f"- {run.get('points', len(df))} points, {int(df['feasible'].sum())} feasible, "
              f"{int(df['slo_pass'].sum())} meet the SLO ({', '.join(f'{k} {v}' for k, v in slo.items()) or 'none set'}), "
              f"{int(df['pareto'].sum())} on the Pareto front; {run.get('failed', 0)} failed.",
              f"- Scenario {run.get('scenario')} (sha256 {str(run.get('scenario_sha256', ''))[:12]}), seed "
              f"{run.get('seed')}, wafer-planner {run.get('version')}, finished {run.get('finished')}.", ""]
    if len(best):
        lines += ["## Cheapest configuration meeting the SLO, per model and hardware", "",
                  "| model | hardware | weights/KV | context | devices | users at SLO | tok/s per user (p50) "
                  "| p99 TTFT (s) | $/M out tokens | capex ($) | kW |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in best.iterrows():
            extra = ""
            if "hardware.bonded_sram.layers" in r and pd.notna(r["hardware.bonded_sram.layers"]) \
                    and r["hardware.bonded_sram.layers"]:
                extra = f" +{int(r['hardware.bonded_sram.layers'])} SRAM"
            users = r.get("capacity_users", r.get("concurrent_users"))
            lines.append(f"| {r['model']} | {r['hardware']}{extra} | {r['weights_precision']}/{r['kv_precision']} "
                         f"| {_fmt(r['context_tokens'])} | {_fmt(r['devices'])} | {_fmt(users)} "
                         f"| {_fmt(r.get('decode_tok_s_per_user_p50'))} | {_fmt(r.get('ttft_p99_s'))} "
                         f"| {_fmt(r['cost_usd_per_mtok_out'])} | {_fmt(r['capex_usd'])} | {_fmt(r['power_kw'])} |")
        lines.append("")
        top = best.sort_values("cost_usd_per_mtok_out").iloc[0]
        sram = top.get("hardware.bonded_sram.layers")
        sram = f" with {int(sram)} bonded SRAM layers" if pd.notna(sram) and sram else ""
        lines += [f"Cheapest overall: **{top['model']} on {_fmt(top['devices'])} x {top['hardware']}{sram}** "
                  f"({top['weights_precision']} weights, context {_fmt(top['context_tokens'])}) at "
                  f"${_fmt(top['cost_usd_per_mtok_out'])} per million output tokens.", ""]
    else:
        lines += ["No configuration meets the SLO.", ""]
    if speed is not None and len(speed):
        ref = int(speed["reference_point"].iloc[0])
        lines += [f"## Agent tasks: decode speed-up vs task speed-up (reference: point {ref})", "",
                  "| point | model | group | decode tok/s | median task (s) | decode x | task x | tool | "
                  "compaction | compactions/task | $/task |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in speed.iterrows():
            lines.append(f"| {int(r['point'])} | {r['model']} | {r['group']} | {_fmt(r['decode_tok_s_per_user_p50'])} "
                         f"| {_fmt(r['task_p50_s'])} | {_fmt(r['decode_speedup'])} | {_fmt(r['task_speedup'])} "
                         f"| {r['share_tool']:.0%} | {r['share_compaction']:.0%} | {_fmt(r['compactions_per_task'])} "
                         f"| {_fmt(r['cost_usd_per_task'])} |")
        lines.append("")
    bad = df[~df["feasible"].astype(bool)]
    if len(bad):
        lines += ["## Why points were infeasible", ""]
        for limit, n in bad["bottleneck"].fillna("?").value_counts().sort_index().items():
            lines.append(f"- {limit}: {n} points")
        lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    return "\n".join(lines)


def write_report(folder: Path) -> list[Path]:
    """PNG plots and summary.md next to results.csv in ``folder``; returns the files written."""
    res = folder / "results.csv"
    if not res.exists():
        raise RuntimeError(f"{res} not found: run `plan sweep` first (or give its -o folder)")
    df = pd.read_csv(res)
    best = pd.read_csv(folder / "best.csv") if (folder / "best.csv").exists() else df.iloc[0:0]
    run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
    for c in ("feasible", "slo_pass", "pareto"):
        df[c] = df[c].fillna(False).astype(bool)
    df = df.copy()  # one block per dtype again after the column updates
    slo = {k: v for k, v in run.get("scenario_resolved", {}).get("slo", {}).items() if v is not None}
    plt = _plt()
    d = plots.prepare(df)
    images = [plots.cost_vs_speed(d, slo, folder / "cost_vs_speed.png", plt),
              plots.throughput_vs_latency(d, slo, folder / "throughput_vs_latency.png", plt),
              plots.devices_vs_context(d, folder / "devices_vs_context.png", plt),
              plots.time_breakdown(df, folder / "time_breakdown.png", plt)]
    fr = pd.read_csv(folder / "frontier.csv") if (folder / "frontier.csv").exists() else pd.DataFrame()
    if not fr.empty:
        images.append(frontier.plot(fr, folder / "frontier.png", plt, slo.get("decode_tok_s_per_user_p50")))
    plt.close("all")
    images = [p for p in images if p is not None]
    md = folder / "summary.md"
    speed = pd.read_csv(folder / "speedup.csv") if (folder / "speedup.csv").exists() else None
    text = summary_md(df, best, run, images, speed)
    if not fr.empty:
        lines = frontier.crossover_text(frontier.crossover(fr))
        text += "\n## Wafer vs GPU: where a token gets cheaper (real hardware, analytic frontier)\n\n" + \
            ("\n".join(lines) if lines else "No context has both a wafer and a GPU curve.") + "\n"
    atomic_write_text(md, text)
    return images + [md]
