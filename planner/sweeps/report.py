"""``plan report DIR``: the plots a planner would rather look at than read, and summary.md.

Reads only the sweep's CSVs and run.json (never re-runs anything), so a report can be made on
another machine from copied results. matplotlib is imported here, lazily: the package does
not need it otherwise.
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from planner.sweeps.export import atomic_write_text, output_error, publish
from planner.sim.sessions import PARTS


def _plt():
    from planner.sweeps.runner import require
    require("matplotlib", "plan report needs matplotlib", "plots")
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _label(df: pd.DataFrame) -> pd.Series:
    """hardware / precision / bonded-SRAM option: one legend entry per configuration family
    (a service profile: its name)."""
    if "weights_precision" not in df:
        df = df.assign(weights_precision="")
    service = df["hardware"].astype(str) == "service"
    lab = df["hardware"].astype(str) + " " + df["weights_precision"].fillna("").astype(str)
    lab = lab.where(~service, "service " + df["model"].astype(str))
    if "hardware.bonded_sram.layers" in df:
        b = pd.to_numeric(df["hardware.bonded_sram.layers"], errors="coerce").fillna(0).astype(int)
        lab = lab + np.where(b > 0, " +" + b.astype(str) + " SRAM", "")
    return lab


def _speed(df: pd.DataFrame) -> pd.Series:
    s = df["decode_tok_s_per_user_p50"] if "decode_tok_s_per_user_p50" in df else pd.Series(np.nan, index=df.index)
    return s.fillna(df.get("decode_tok_s_per_user_analytic"))


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        publish(tmp, path)
    except OSError as e:  # a read-only folder, a full disk: one line, exit 1
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise output_error(e, path) from None
    return path


def _styles(labels) -> dict:
    """A distinct (colour, marker, line style) per label: colour by hardware, marker/line by option."""
    labels = sorted(set(labels))
    hw = sorted({lab.split(" ")[0] for lab in labels})
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    markers, lines = "os^DvP*X<>", ["-", "--", ":", "-."]
    out, seen = {}, {}
    for lab in labels:
        h = lab.split(" ")[0]
        k = seen[h] = seen.get(h, -1) + 1
        out[lab] = (colours[hw.index(h) % len(colours)], markers[k % len(markers)], lines[k // len(markers) % 4])
    return out


def _legend(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _finish(fig, ax, path: Path, **labels) -> Path:
    """Log-log axes with a grid, the legend outside, saved."""
    ax.set(xscale="log", yscale="log", **labels)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def front_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both higher x and lower y, by rising x."""
    order = np.lexsort((y, -x))  # fastest first, cheaper first among equals
    keep, best = [], math.inf
    for i in order:
        if y[i] < best:
            keep.append(i)
            best = y[i]
    return np.array(keep[::-1], dtype=int)


def cost_vs_speed(df: pd.DataFrame, slo: dict, path: Path, plt) -> Path:
    fig, ax = plt.subplots(figsize=(10, 6))
    ok = df[df["feasible"] & np.isfinite(df["cost_usd_per_mtok_out"].astype(float))].copy()
    ok["speed"] = _speed(ok)
    ok["label"] = _label(ok)
    style = _styles(ok["label"])
    for lab, g in ok.groupby("label", sort=True):
        c, m, _ = style[lab]
        passed = g[g["slo_pass"]]
        ax.scatter(passed["speed"], passed["cost_usd_per_mtok_out"], s=22, alpha=0.75, color=c, marker=m, label=lab)
        missed = g[~g["slo_pass"]]
        ax.scatter(missed["speed"], missed["cost_usd_per_mtok_out"], s=22, alpha=0.4, color=c, marker="x")
    met = ok[ok["slo_pass"]]
    if len(met):
        idx = front_2d(met["speed"].to_numpy(float), met["cost_usd_per_mtok_out"].to_numpy(float))
        f = met.iloc[idx]
        ax.step(f["speed"], f["cost_usd_per_mtok_out"], "k-", where="post", lw=1.2,
                label="frontier: cheapest at this speed or more")
        p3 = ok[ok["pareto"]]
        ax.scatter(p3["speed"], p3["cost_usd_per_mtok_out"], s=70, facecolors="none", edgecolors="k", lw=0.8,
                   label="Pareto (cost, speed, throughput)")
    target = slo.get("decode_tok_s_per_user_p50")
    if target:
        ax.axvline(target, color="r", ls="--", lw=1, label=f"SLO {target:g} tok/s per user")
    return _finish(fig, ax, path, xlabel="per-user decode speed, p50 (tok/s)",
                   ylabel="$ per million output tokens (at capacity)",
                   title="Cost per token vs per-user speed (x: misses the SLO)")


def throughput_vs_latency(df: pd.DataFrame, slo: dict, path: Path, plt) -> Path:
    fig, ax = plt.subplots(figsize=(10, 6))
    col = "ttft_p99_s" if "ttft_p99_s" in df and df["ttft_p99_s"].notna().any() else "ttft_analytic_s"
    ok = df[df["feasible"]].assign(label=lambda d: _label(d))
    style = _styles(ok["label"])
    for lab, g in ok.groupby("label", sort=True):
        c, m, _ = style[lab]
        ax.scatter(g[col], g["throughput_out_tok_s"], s=22, alpha=0.75, color=c, marker=m, label=lab)
    target = slo.get("ttft_p99_s")
    if target:
        ax.axvline(target, color="r", ls="--", lw=1, label=f"SLO p99 TTFT {target:g} s")
    return _finish(fig, ax, path, xlabel=f"{col} (s)", ylabel="output tok/s of the deployment",
                   title="Throughput vs p99 time to first token, per configuration")


def devices_vs_context(df: pd.DataFrame, path: Path, plt) -> Path | None:
    """Fewest devices meeting the SLO at each context length, one line per precision/SRAM option."""
    ok = df[df["slo_pass"].astype(bool)]
    if ok.empty or "context_tokens" not in ok:
        return None
    fig, ax = plt.subplots(figsize=(10, 6))
    fewest = ok.assign(option=_label(ok)).groupby(["option", "context_tokens"])["devices"].min().reset_index()
    style = _styles(fewest["option"])
    for opt, g in fewest.groupby("option", sort=True):
        c, m, ls = style[opt]
        ax.plot(g["context_tokens"], g["devices"], color=c, marker=m, ls=ls, label=opt)
    return _finish(fig, ax, path, xlabel="context length (tokens)",
                   ylabel="devices needed (wafers or GPUs) within the SLO", title="Devices needed vs context length")


def time_breakdown(df: pd.DataFrame, path: Path, plt) -> Path | None:
    """Agent tasks: where a task's time goes, per configuration (stacked shares x median task time)."""
    if "task_p50_s" not in df:
        return None
    ok = df[df["feasible"] & df["task_p50_s"].notna()]
    if ok.empty:
        return None
    labels = [f"{int(r['point'])}: {r['model']} ({r['group']})" for _, r in ok.iterrows()]
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.35 * len(ok) + 1.5)))
    left = np.zeros(len(ok))
    colours = ["tab:gray", "tab:red", "tab:orange", "tab:blue", "tab:purple", "tab:green"]
    for p, c in zip(PARTS, colours):
        secs = (ok[f"share_{p}"].fillna(0) * ok["task_p50_s"]).to_numpy(float)
        ax.barh(labels, secs, left=left, color=c, label=p.replace("_", " "))
        left += secs
    ax.invert_yaxis()
    ax.set(xlabel="seconds of a median task (shares of all task time)", title="Where an agent task's time goes")
    ax.grid(True, axis="x", alpha=0.3)
    _legend(ax)
    return _save(fig, path)


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
    plt = _plt()
    try:
        images = [cost_vs_speed(df, slo, folder / "cost_vs_speed.png", plt),
                  throughput_vs_latency(df, slo, folder / "throughput_vs_latency.png", plt),
                  devices_vs_context(df, folder / "devices_vs_context.png", plt),
                  time_breakdown(df, folder / "time_breakdown.png", plt)]
        images = [p for p in images if p is not None]
        md = folder / "summary.md"
        text = summary_md(df, best, run, images, speed)
    except (KeyError, ValueError, TypeError, AttributeError) as e:  # a column of the wrong kind
        raise BadResults(f"{folder}: the results cannot be plotted ({type(e).__name__}: {e})") from None
    finally:
        plt.close("all")
    atomic_write_text(md, text)
    return images + [md]
