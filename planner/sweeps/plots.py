"""The report's pictures, drawn one way everywhere so a reader learns the code once.

One panel per context length (a requirement, not a choice, so never mixed in one cloud);
colour = hardware; marker = precision and bonded-SRAM option; hollow markers and dashed lines
= hypothetical hardware (unbuilt wafers, bonded SRAM); x = misses the SLO. Axis labels say
what is measured and in which unit. With nothing to draw a panel says why in words instead
of showing empty axes (and matplotlib is never asked to make a legend of nothing).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from planner.sim.sessions import PARTS
from planner.sweeps.export import publish

COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan"]
MARKERS = "os^DvP*X<>hpd8H"


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The columns every plot reads: option (precision + SRAM), speed, hypothetical, context."""
    d = df.copy()
    if "weights_precision" not in d:
        d["weights_precision"] = ""
    service = d["hardware"].astype(str) == "service"
    opt = d["weights_precision"].fillna("").astype(str)
    if "hardware.bonded_sram.layers" in d:
        b = pd.to_numeric(d["hardware.bonded_sram.layers"], errors="coerce").fillna(0).astype(int)
        opt = opt + np.where(b > 0, " +" + b.astype(str) + " SRAM", "")
    d["option"] = opt.where(~service, "service")
    d["hw"] = d["hardware"].astype(str).where(~service, "service " + d["model"].astype(str))
    sim = d["decode_tok_s_per_user_p50"] if "decode_tok_s_per_user_p50" in d else pd.Series(np.nan, index=d.index)
    d["speed"] = sim.fillna(d.get("decode_tok_s_per_user_analytic", np.nan))
    d["hyp"] = d["hypothetical"].fillna(False).astype(str).str.lower().eq("true") if "hypothetical" in d else False
    if "context_tokens" not in d:
        d["context_tokens"] = np.nan
    return d


def styles(d: pd.DataFrame) -> tuple[dict, dict]:
    """(colour per hardware, marker per option), stable for the whole report."""
    hws = sorted(set(d["hw"]))
    opts = sorted(set(d["option"]))
    return ({h: COLOURS[i % len(COLOURS)] for i, h in enumerate(hws)},
            {o: MARKERS[i % len(MARKERS)] for i, o in enumerate(opts)})


def _contexts(d: pd.DataFrame) -> list:
    vals = sorted(v for v in d["context_tokens"].dropna().unique())
    return vals or [None]


def _panels(plt, n: int, sharey: bool = True):
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.2), sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def _log_axes(ax, x_ticks=None) -> None:
    """Log axes read as plain numbers (0.2, 1, 5, 10,000), not powers of ten; a grid."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    ax.set(xscale="log", yscale="log")
    plain = FuncFormatter(lambda v, _: f"{v:,.6g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    if x_ticks is not None:
        ax.xaxis.set_major_locator(FixedLocator(x_ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}K" if v >= 1024 else f"{v:g}"))
    ax.grid(True, which="major", alpha=0.35)


def _title(ctx) -> str:
    return "context: any" if ctx is None or (isinstance(ctx, float) and math.isnan(ctx)) else \
        f"context {int(ctx):,} tokens"


def _message(ax, text: str) -> None:
    """Words where a plot would be empty."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, transform=ax.transAxes)


def _empty(ax, d: pd.DataFrame, ctx) -> None:
    """Say why a panel has nothing to show: the commonest reason among its points."""
    g = d if ctx is None else d[d["context_tokens"] == ctx]
    why = g["reason"].dropna().astype(str) if "reason" in g else pd.Series(dtype=str)
    why = why[why != ""]
    top = why.value_counts().index[0] if len(why) else "see results.csv"
    top = textwrap.fill("e.g. " + (top if len(top) <= 120 else top[:117] + "..."), 44)
    _message(ax, f"{_title(ctx)}:\nno feasible configuration\n\n{top}\n\n(every reason: results.csv `reason`)")


def _legend(fig, d: pd.DataFrame, colour: dict, marker: dict, extra: list | None = None) -> None:
    """Two keys: colour = hardware (dashed/hollow if hypothetical), marker = option; plus notes."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="none", label="hardware (colour)")]
    hyp = d.groupby("hw")["hyp"].all()  # the hardware itself, not a bonded-SRAM option on it
    for h, c in colour.items():
        handles.append(Line2D([], [], color=c, lw=2, ls="--" if hyp.get(h, False) else "-",
                              label=f"{h} (hypothetical)" if hyp.get(h, False) else h))
    handles.append(Line2D([], [], color="none", label="precision / option (marker)"))
    for o, m in marker.items():
        handles.append(Line2D([], [], color="k", marker=m, ls="none", label=o))
    handles += extra or []
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)


def _scatter(ax, g: pd.DataFrame, x: str, y: str, colour: dict, marker: dict) -> int:
    """Points of one panel; returns how many were drawn."""
    n = 0
    for (h, o, hyp, ok), p in g.groupby(["hw", "option", "hyp", "slo_pass"], sort=True):
        p = p[np.isfinite(p[x].astype(float)) & np.isfinite(p[y].astype(float)) & (p[x] > 0) & (p[y] > 0)]
        if p.empty:
            continue
        n += len(p)
        if not ok:
            ax.scatter(p[x], p[y], s=18, marker="x", color=colour[h], alpha=0.45, lw=0.8)
        elif hyp:
            ax.scatter(p[x], p[y], s=34, marker=marker[o], facecolors="none", edgecolors=colour[h], lw=1.1)
        else:
            ax.scatter(p[x], p[y], s=34, marker=marker[o], color=colour[h], alpha=0.85)
    return n


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    publish(tmp, path)
    return path


def _notes():
    from matplotlib.lines import Line2D
    return [Line2D([], [], color="none", label="hollow / dashed: hypothetical"),
            Line2D([], [], color="gray", marker="x", ls="none", label="x: misses the SLO")]


def front_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both higher x and lower y, by rising x."""
    order = np.lexsort((y, -x))  # fastest first, cheaper first among equals
    keep, best = [], math.inf
    for i in order:
        if y[i] < best:
            keep.append(i)
            best = y[i]
    return np.array(keep[::-1], dtype=int)


def cost_vs_speed(d: pd.DataFrame, slo: dict, path: Path, plt) -> Path:
    """$/M output tokens against per-user speed, the cheapest-at-this-speed frontier, the SLO speed."""
    ctxs = _contexts(d)
    fig, axes = _panels(plt, len(ctxs))
    colour, marker = styles(d)
    ok = d[d["feasible"] & np.isfinite(pd.to_numeric(d["cost_usd_per_mtok_out"], errors="coerce"))]
    target, drawn = slo.get("decode_tok_s_per_user_p50"), False
    for ax, ctx in zip(axes, ctxs):
        g = ok if ctx is None else ok[ok["context_tokens"] == ctx]
        if not _scatter(ax, g, "speed", "cost_usd_per_mtok_out", colour, marker):
            _empty(ax, d, ctx)
            continue
        drawn = True
        met = g[g["slo_pass"] & (g["speed"] > 0)]
        if len(met):
            f = met.iloc[front_2d(met["speed"].to_numpy(float), met["cost_usd_per_mtok_out"].to_numpy(float))]
            ax.step(f["speed"], f["cost_usd_per_mtok_out"], "k-", where="post", lw=1.0)
        if target:
            ax.axvline(target, color="r", ls="--", lw=1)
        _log_axes(ax)
        ax.set(title=_title(ctx), xlabel="speed per user, median (tokens/s)")
    if drawn:
        axes[0].set_ylabel("cost ($ per million output tokens, at capacity)")
    from matplotlib.lines import Line2D
    extra = _notes() + [Line2D([], [], color="k", lw=1, label="cheapest at this speed or faster (SLO met)")]
    if target:
        extra.append(Line2D([], [], color="r", ls="--", lw=1, label=f"SLO: {target:g} tokens/s per user"))
    if drawn:
        _legend(fig, d, colour, marker, extra)
    fig.suptitle("Cost per output token vs speed per user")
    return _save(fig, path)


def throughput_vs_latency(d: pd.DataFrame, slo: dict, path: Path, plt) -> Path:
    """Output tokens/s per device against p99 time to first token: what each device delivers."""
    ctxs = _contexts(d)
    fig, axes = _panels(plt, len(ctxs))
    colour, marker = styles(d)
    col = "ttft_p99_s" if "ttft_p99_s" in d and d["ttft_p99_s"].notna().any() else "ttft_analytic_s"
    ok = d[d["feasible"]]
    if "throughput_out_tok_s_per_device" in ok:
        ok = ok.assign(per_device=ok["throughput_out_tok_s_per_device"])
    else:  # results written before the column existed
        ok = ok.assign(per_device=ok["throughput_out_tok_s"] / ok["devices"])
    target, drawn = slo.get("ttft_p99_s"), False
    for ax, ctx in zip(axes, ctxs):
        g = ok if ctx is None else ok[ok["context_tokens"] == ctx]
        if not _scatter(ax, g, col, "per_device", colour, marker):
            _empty(ax, d, ctx)
            continue
        drawn = True
        if target:
            ax.axvline(target, color="r", ls="--", lw=1)
        which = "simulated" if col == "ttft_p99_s" else "closed form, idle replica"
        _log_axes(ax)
        ax.set(title=_title(ctx), xlabel=f"time to first token, p99 (s; {which})")
    if drawn:
        axes[0].set_ylabel("output tokens/s per device (wafer or GPU)")
    from matplotlib.lines import Line2D
    extra = _notes() + ([Line2D([], [], color="r", ls="--", lw=1, label=f"SLO: p99 TTFT {target:g} s")]
                        if target else [])
    if drawn:
        _legend(fig, d, colour, marker, extra)
    fig.suptitle("Throughput per device vs time to first token")
    return _save(fig, path)


def devices_vs_context(d: pd.DataFrame, path: Path, plt) -> Path | None:
    """Fewest devices meeting the SLO at each context length: a line per hardware and option."""
    if d["context_tokens"].isna().all():
        return None
    fig, axes = _panels(plt, 1)
    ax = axes[0]
    colour, marker = styles(d)
    ok = d[d["slo_pass"]]
    if ok.empty:
        _message(ax, "no configuration meets the SLO at any context length\n(why: summary.md, results.csv `reason`)")
        return _save(fig, path)
    else:
        fewest = ok.groupby(["hw", "option", "hyp", "context_tokens"])["devices"].min().reset_index()
        for (h, o, hyp), g in fewest.groupby(["hw", "option", "hyp"], sort=True):
            ax.plot(g["context_tokens"], g["devices"], color=colour[h], marker=marker[o], ls="--" if hyp else "-",
                    mfc="none" if hyp else colour[h])
        _log_axes(ax, x_ticks=sorted(d["context_tokens"].dropna().unique()))
        ax.set(xlabel="context length (tokens per sequence; K = 1,024)",
               ylabel="fewest devices meeting the SLO (wafers or GPUs)")
    _legend(fig, d, colour, marker, _notes()[:1])
    fig.suptitle("Devices needed vs context length")
    return _save(fig, path)


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
    colours = ["tab:gray", "tab:brown", "tab:pink", "tab:red", "tab:orange", "tab:blue", "tab:purple", "tab:green"]
    for p, c in zip(PARTS, colours):
        secs = (ok[f"share_{p}"].fillna(0) * ok["task_p50_s"]).to_numpy(float)
        ax.barh(labels, secs, left=left, color=c, label=p.replace("_", " "))
        left += secs
    ax.invert_yaxis()
    ax.set(xlabel="seconds of a median task (shares of all task time)", title="Where an agent task's time goes")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(fig, path)


def _curve_label(row: pd.Series, keys: list[str]) -> str:
    """A fixed-load curve's name: its swept values (the offload batching only where it applies)."""
    parts = []
    for k in keys:
        if k == "deployment.offload_batching" and row.get("deployment.kv_policy", "offload") != "offload":
            continue
        parts.append(str(row[k]))
    return " ".join(parts) or str(row["group"])


def speed_vs_users(df: pd.DataFrame, path: Path, plt) -> Path | None:
    """Fixed-load curves (a sweep group varying ``workload.concurrent_users`` without a capacity
    search, past what SRAM holds at some point): per-user decode speed, p99 TTFT and output
    tokens/s per replica against users per replica over what its SRAM holds, a line per
    configuration. Speed is averaged over decoding time where the run has it
    (offload, swap, preempt: a stalled request counts for as long as it lasts), else the median
    request's; dotted: the median request's, which a fast majority can hide a slow minority from."""
    need = {"concurrent_users", "max_concurrent_sequences", "replicas", "decode_tok_s_per_user_p50", "ttft_p99_s",
            "throughput_source", "throughput_out_tok_s"}
    if not need <= set(df):
        return None
    d = df[df["feasible"] & (df["throughput_source"] == "sim")]
    if "capacity_users" in d:
        d = d[d["capacity_users"].isna()]
    curves = []
    for _, rows in d.groupby("group", sort=False):
        past = rows["concurrent_users"] / rows["replicas"] > rows["max_concurrent_sequences"]
        if rows["concurrent_users"].nunique() < 3 or not past.any():
            continue
        keys = [c for c in rows.columns if "." in c and c != "workload.concurrent_users"
                and rows[c].nunique(dropna=True) > 1]
        for _, line in (rows.groupby(keys, sort=False, dropna=False) if keys else [(None, rows)]):
            curves.append((_curve_label(line.iloc[0], keys), line.sort_values("concurrent_users")))
    if not curves:
        return None
    fig, (ax, bx, cx) = _panels(plt, 3, sharey=False)
    for i, (label, c) in enumerate(curves):
        x = c["concurrent_users"] / c["replicas"] / c["max_concurrent_sequences"]
        timed = c.get("decode_tok_s_per_user_time_avg", pd.Series(np.nan, index=c.index))
        colour = COLOURS[i % len(COLOURS)]
        ax.plot(x, timed.fillna(c["decode_tok_s_per_user_p50"]), color=colour, marker=MARKERS[i % len(MARKERS)],
                label=label)
        ax.plot(x, c["decode_tok_s_per_user_p50"], color=colour, ls=":", lw=1)
        bx.plot(x, c["ttft_p99_s"], color=colour, marker=MARKERS[i % len(MARKERS)], label=label)
        cx.plot(x, c["throughput_out_tok_s"] / c["replicas"], color=colour, marker=MARKERS[i % len(MARKERS)],
                label=label)
    for a in (ax, bx, cx):
        a.axvline(1.0, color="k", ls="--", lw=0.8)
        a.set_yscale("log")
        a.grid(True, alpha=0.35)
        a.set_xlabel("users per replica / SRAM limit (sequences)")
    ax.set(ylabel="per-user decode speed (tok/s; averaged over decoding time)",
           title="speed per user (dotted: the median request's)")
    bx.set(ylabel="time to first token, p99 (s)", title="waiting for a first token")
    cx.set(ylabel="output tokens/s per replica", title="what a replica serves")
    cx.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    fig.suptitle("Fixed load: per-user speed as users pass what SRAM holds")
    return _save(fig, path)
