"""frontier.csv (each configuration's cost-vs-speed curve), the wafer/GPU crossover per
context, and the frontier plot: $/M output tokens against tok/s per user, log axes, one panel
per context, one line per option, hypothetical hardware dashed.

The crossover: for each context and per-user speed s, the cheapest $/M output tokens any real
configuration of a kind (wafer, GPU) offers at >= s tok/s per user (the highest load of its
curve that still gives s). Where the cheaper kind changes is a crossover speed.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from planner.plan.point import PointResult

FRONTIER_KEY = "_frontier"  # rides along a results row from a worker (and in the store), popped before tables
IDENTITY = ["model", "hardware", "weights_precision", "kv_precision", "context_tokens", "hypothetical",
            "devices_per_replica"]


def frontier_rows(r: PointResult, row: dict) -> list[dict]:
    """The point's curve as rows, each with its configuration (``row``: its results row; the
    point and group are added by ``table``, since a stored row may be reused at another index)."""
    ident = {"hardware_kind": None, **{k: row.get(k) for k in IDENTITY}}
    if r.estimate is not None and r.point.config is not None:
        ident["hardware_kind"] = r.point.config.hardware.kind
    return [{**ident, **dataclasses.asdict(f)} for f in r.frontier]


def table(rows: list[dict]) -> pd.DataFrame:
    """frontier.csv: every row's curve, tagged with the row's point and group."""
    return pd.DataFrame([{"point": r["point"], "group": r["group"], **f} for r in rows for f in r.get(FRONTIER_KEY, [])])


def crossover(fr: pd.DataFrame, n: int = 48, speeds=None) -> pd.DataFrame:
    """Per context and model, on a log grid of per-user speeds: the cheapest real wafer and real
    GPU $/M output tokens at that speed or faster, and which kind is cheaper."""
    cols = ["model", "context_tokens", "tok_s_per_user", "wafer_usd_per_mtok_out", "gpu_usd_per_mtok_out", "cheaper"]
    if fr.empty:
        return pd.DataFrame(columns=cols)
    real = fr[~fr["hypothetical"].astype(bool)]
    out = []
    for (model, ctx), g in real.groupby(["model", "context_tokens"], sort=True):
        have = g["decode_tok_s_per_user"].to_numpy(float)
        grid = np.geomspace(max(have.min(), 1e-3), have.max(), n) if speeds is None else speeds
        for s in grid:
            best = {}
            for kind in ("wafer", "gpu"):
                k = g[(g["hardware_kind"] == kind) & (g["decode_tok_s_per_user"] >= s * (1 - 1e-12))]
                best[kind] = float(k["cost_usd_per_mtok_out"].min()) if len(k) else np.nan
            w, gp = best["wafer"], best["gpu"]
            cheaper = "wafer" if w < gp or np.isnan(gp) and not np.isnan(w) else \
                "gpu" if gp < w or np.isnan(w) and not np.isnan(gp) else ("tie" if w == gp else "")
            out.append((model, ctx, float(s), w, gp, cheaper))
    return pd.DataFrame(out, columns=cols)


def crossover_text(cx: pd.DataFrame) -> list[str]:
    """One line per model and context: which kind is cheaper per output token up to which speed."""
    lines = []
    for (model, ctx), g in cx.groupby(["model", "context_tokens"], sort=True):
        g = g[g["cheaper"].isin(["wafer", "gpu"])].reset_index(drop=True)
        if g.empty:
            continue
        parts, start = [], 0
        for i in range(1, len(g) + 1):
            if i == len(g) or g.loc[i, "cheaper"] != g.loc[start, "cheaper"]:
                lo, hi = g.loc[start, "tok_s_per_user"], g.loc[i - 1, "tok_s_per_user"]
                at = g.loc[i - 1]
                price = (f" (at {hi:,.0f}: wafer ${at.wafer_usd_per_mtok_out:,.3g}, GPU "
                         f"${at.gpu_usd_per_mtok_out:,.3g} per M)") if np.isfinite(at.wafer_usd_per_mtok_out) \
                    and np.isfinite(at.gpu_usd_per_mtok_out) else ""
                parts.append(f"{g.loc[start, 'cheaper'].upper() if g.loc[start, 'cheaper'] == 'gpu' else 'wafer'} "
                             f"{lo:,.3g}-{hi:,.3g} tok/s/user{price}")
                start = i
        lines.append(f"- {model}, {int(ctx):,}-token context, cheaper per output token: " + "; ".join(parts))
    return lines


def plot(fr: pd.DataFrame, path, plt, slo_speed: float | None = None):
    """The frontier plot; None (and no file) when there is nothing to draw."""
    if fr.empty:
        return None
    ctxs = sorted(fr["context_tokens"].dropna().unique())
    fig, axes = plt.subplots(1, len(ctxs), figsize=(5.2 * len(ctxs), 4.4), squeeze=False, sharey=True)
    hw = sorted(fr["hardware"].unique())
    colours = {h: plt.get_cmap("tab10")(i % 10) for i, h in enumerate(hw)}
    from matplotlib.collections import LineCollection
    for ax, ctx in zip(axes[0], ctxs):
        g = fr[fr["context_tokens"] == ctx]
        curves: dict[tuple, list] = {}  # (hardware, hypothetical) -> curves: one artist each (hundreds of
        for (h, w, hyp, point), c in g.groupby(["hardware", "weights_precision", "hypothetical", "point"], sort=True):
            c = c.sort_values("decode_tok_s_per_user")  # lines took seconds to lay out and draw)
            curves.setdefault((h, hyp), []).append(c[["decode_tok_s_per_user", "cost_usd_per_mtok_out"]].to_numpy(float))
        for (h, hyp), lines in curves.items():
            ax.add_collection(LineCollection(lines, colors=[colours[h]], linewidths=1.0, alpha=0.7,
                                             linestyles="--" if hyp else "-"))
        ax.autoscale_view()
        if slo_speed:
            ax.axvspan(slo_speed, ax.get_xlim()[1] if ax.has_data() else slo_speed * 10, color="g", alpha=0.06)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"context {int(ctx):,} tokens")
        ax.set_xlabel("decode speed per user (tokens/s)")
        ax.grid(True, which="both", alpha=0.2)
    axes[0][0].set_ylabel("cost per million output tokens ($)")
    for h in hw:
        axes[0][-1].plot([], [], color=colours[h], label=h)
    axes[0][-1].plot([], [], color="k", ls="--", label="hypothetical")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
