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
from planner.sweeps.answer import COST_NOTE, spec_suffix, sram_suffix
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
        # the labels the answer table uses (answer.py): bonded SRAM after the hardware, drafts
        # after the precision; by position, so the row picked as cheapest keeps its own
        sram, spec = sram_suffix(best).tolist(), spec_suffix(best).tolist()
        # '>= ': the capacity search stopped at the target users (a lower bound)
        bound = [">= " if str(v) == "target" else "" for v in best.get("capacity_limit", [None] * len(best))]
        for (_, r), sr, sp, ge in zip(best.iterrows(), sram, spec, bound):
            extra = sr + (" (hypothetical)" if str(r.get("hypothetical")) == "True" else "")
            users = r.get("capacity_users", r.get("concurrent_users"))
            lines.append(f"| {r['model']} | {r['hardware']}{extra} | {r['weights_precision']}/{r['kv_precision']}"
                         f"{sp} "
                         f"| {_fmt(r['context_tokens'])} | {_fmt(r['devices'])} | {ge}{_fmt(users)} "
                         f"| {_fmt(r.get('decode_tok_s_per_user_p50'))} | {_fmt(r.get('ttft_p99_s'))} "
                         f"| {_fmt(r['cost_usd_per_mtok_out'])} | {_fmt(r['capex_usd'])} | {_fmt(r['power_kw'])} |")
        lines += ["", COST_NOTE + (" '>=': the capacity search stopped at the target users; a replica may carry "
                                   "more." if any(bound) else ""), ""]
        i = best["cost_usd_per_mtok_out"].reset_index(drop=True).sort_values().index[0]
        top = best.iloc[i]
        sram = top.get("hardware.bonded_sram.layers")
        sram = f" with {int(sram)} bonded SRAM layers" if pd.notna(sram) and sram else ""
        lines += [f"Cheapest overall: **{top['model']} on {_fmt(top['devices'])} x {top['hardware']}{sram}** "
                  f"({top['weights_precision']} weights{spec[i]}, context {_fmt(top['context_tokens'])}) at "
                  f"${_fmt(top['cost_usd_per_mtok_out'])} per million output tokens.", ""]
    else:
        lines += ["No configuration meets the SLO.", ""]
    lines += cap_md(df, sc.get("economics", {}).get("facility_power_cap"))
    if speed is not None and len(speed):
        ref = int(speed["reference_point"].iloc[0])
        lines += [f"## Agent tasks: decode speed-up vs task speed-up (reference: point {ref})", "",
                  "| point | model | group | decode tok/s | median task (s) | decode x | task x | tool | CPU wait "
                  "| overhead | compaction | compactions/task | $/task |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        share = lambda r, c: f"{r[c]:.0%}" if c in r and pd.notna(r[c]) else "-"  # noqa: E731
        for _, r in speed.iterrows():
            lines.append(f"| {int(r['point'])} | {r['model']} | {r['group']} | {_fmt(r['decode_tok_s_per_user_p50'])} "
                         f"| {_fmt(r['task_p50_s'])} | {_fmt(r['decode_speedup'])} | {_fmt(r['task_speedup'])} "
                         f"| {share(r, 'share_tool')} | {share(r, 'share_tool_wait')} | {share(r, 'share_overhead')} "
                         f"| {share(r, 'share_compaction')} | {_fmt(r['compactions_per_task'])} "
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


def cap_md(df: pd.DataFrame, cap_w) -> list[str]:
    """"What serves the most tokens in this much facility power": per context, the configuration
    of each hardware (real and hypothetical apart) meeting the SLO whose replicas, as many as fit
    in ``economics.facility_power_cap`` at nameplate x PUE, serve the most output tokens/s."""
    if not cap_w or "cap_out_tok_s" not in df:
        return []
    ok = df[df["slo_pass"] & pd.to_numeric(df["cap_out_tok_s"], errors="coerce").gt(0)].copy()
    mw = f"{cap_w / 1e6:,.4g} MW"
    head = [f"## Most output tokens within {mw} of facility power", "",
            f"Replicas as many as fit in {mw} at nameplate power x PUE (a facility provisions for the most "
            "its systems can draw), each at its operating load meeting the SLO; per context, hardware and option "
            "(bonded SRAM, drafts) the configuration serving the most. MW drawn: at that load (power follows load). "
            "'>=': the capacity search stopped at the target users, a replica may carry more.", ""]
    if ok.empty:
        return head + ["No configuration meeting the SLO fits in the cap.", ""]
    ok["sram"], ok["spec"] = sram_suffix(ok), spec_suffix(ok)  # labels as in the tables above
    lines = head + ["| context | hardware | weights/KV | devices/replica | replicas | output tok/s | tok/s per user "
                    "| MW drawn | $/M out | power |", "|---|---|---|---|---|---|---|---|---|---|"]
    speed = ok["decode_tok_s_per_user_p50"] if "decode_tok_s_per_user_p50" in ok else \
        pd.Series(np.nan, index=ok.index)
    ok["speed"] = speed.fillna(ok.get("decode_tok_s_per_user_analytic", np.nan))
    for ctx, g in ok.groupby("context_tokens", sort=True):
        top = g.sort_values(["cap_out_tok_s", "point"], ascending=[False, True], kind="stable")
        top = top.groupby(["hypothetical", "hardware", "sram", "spec"], sort=False).head(1)
        top = top.sort_values(["hypothetical", "cap_out_tok_s"], ascending=[True, False], kind="stable")
        for _, r in top.iterrows():
            ge = ">= " if str(r.get("cap_lower_bound")) == "True" else ""
            flag = " (hypothetical)" if str(r["hypothetical"]) == "True" else ""
            lines.append(f"| {_fmt(ctx)} | {r['hardware']}{r['sram']}{flag} | {r['weights_precision']}/"
                         f"{r['kv_precision']}{r['spec']} | {_fmt(r['devices_per_replica'])} | {_fmt(r['cap_replicas'])} "
                         f"| {ge}{_fmt(r['cap_out_tok_s'])} | {_fmt(r['speed'])} | {_fmt(r['cap_facility_mw'])} "
                         f"| {_fmt(r['cost_usd_per_mtok_out'])} | {r.get('power_source', '')} |")
    return lines + [""]


REQUIRED = ("point", "group", "feasible", "slo_pass", "pareto", "model", "hardware", "bottleneck", "devices",
            "cost_usd_per_mtok_out", "throughput_out_tok_s")


class BadResults(RuntimeError):
    """A sweep folder whose files are missing, malformed or from different runs (exit 2, one line)."""


def _csv(path: Path, required=()) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # not a CSV table
        raise BadResults(f"{path}: not a sweep table ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    missing = [c for c in required if c not in df]
    if missing:
        raise BadResults(f"{path}: not a sweep's results table (no column {', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''})")
    return df


def read_folder(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame | None]:
    """(results, best, run.json, speedup or None) of a sweep folder, checked: each CSV parses,
    results has the columns the report uses, run.json is an object, and the CSVs are the ones
    run.json lists (sha256), not a set mixed by a crash between two renames."""
    res = folder / "results.csv"
    if not res.exists():
        raise BadResults(f"{res} not found: run `plan sweep` first (or give its -o folder)")
    run = {}
    if (folder / "run.json").exists():
        try:
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadResults(f"{folder / 'run.json'}: not JSON ({e})") from None
        if not isinstance(run, dict):
            raise BadResults(f"{folder / 'run.json'}: not a JSON object")
    tables = run.get("tables")
    if isinstance(tables, dict):
        import hashlib
        for name, digest in tables.items():
            f = folder / str(name)
            if not f.exists() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise BadResults(f"{f} is not the table run.json lists (a sweep stopped while renaming its "
                                 "files, or it was edited): run the sweep again")
    df = _csv(res, REQUIRED)
    best = _csv(folder / "best.csv", REQUIRED) if (folder / "best.csv").exists() else df.iloc[0:0]
    speed = _csv(folder / "speedup.csv") if (folder / "speedup.csv").exists() else None
    for c in ("feasible", "slo_pass", "pareto"):
        df[c] = df[c].fillna(False).astype(bool)
    return df.copy(), best, run, speed  # copy: one block per dtype again after the column updates


def write_report(folder: Path) -> list[Path]:
    """PNG plots and summary.md next to results.csv in ``folder``; returns the files written."""
    df, best, run, speed = read_folder(folder)
    sc = run.get("scenario_resolved")
    slo = sc.get("slo") if isinstance(sc, dict) else None
    slo = {k: v for k, v in slo.items() if v is not None} if isinstance(slo, dict) else {}
    fr = _csv(folder / "frontier.csv") if (folder / "frontier.csv").exists() else pd.DataFrame()
    plt = _plt()
    try:
        d = plots.prepare(df)
        images = [plots.cost_vs_speed(d, slo, folder / "cost_vs_speed.png", plt),
                  plots.throughput_vs_latency(d, slo, folder / "throughput_vs_latency.png", plt),
                  plots.devices_vs_context(d, folder / "devices_vs_context.png", plt),
                  plots.time_breakdown(df, folder / "time_breakdown.png", plt),
                  plots.speed_vs_users(df, folder / "speed_vs_users.png", plt)]
        if not fr.empty:
            images.append(frontier.plot(fr, folder / "frontier.png", plt, slo.get("decode_tok_s_per_user_p50")))
        images = [p for p in images if p is not None]
        text = summary_md(df, best, run, images, speed)
        if not fr.empty:
            lines = frontier.crossover_text(frontier.crossover(fr))
            text += "\n## Wafer vs GPU: where a token gets cheaper (real hardware, analytic frontier)\n\n" + \
                ("\n".join(lines) if lines else "No context has both a wafer and a GPU curve.") + "\n"
    except (KeyError, ValueError, TypeError, AttributeError) as e:  # a column of the wrong kind
        raise BadResults(f"{folder}: the results cannot be plotted ({type(e).__name__}: {e})") from None
    finally:
        plt.close("all")
    md = folder / "summary.md"
    atomic_write_text(md, text)
    return images + [md]
