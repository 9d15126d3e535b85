"""The answer to "what should I buy": a short ranked table out of a results table.

Why its own table: results.csv has a row per configuration tried and ~130 columns; the
question a sweep answers fits in a dozen rows. Per model and context (requirements, not
choices) the configurations meeting the SLO are ranked by $/M output tokens (fewer devices
on a tie); ``per_hardware`` keeps the cheapest per hardware (what ``plan sweep`` prints);
hardware with no configuration meeting the SLO gets one row saying why.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

ANSWER_COLUMNS = ["rank", "model", "context_tokens", "hardware", "precision", "devices", "replicas",
                  "tok_s_per_user", "ttft_p99_s", "cost_usd_per_mtok_out", "power_kw", "bottleneck", "hypothetical",
                  "slo_pass", "throughput_source", "reason", "point"]


def _pick(df: pd.DataFrame, sim: str, analytic: str) -> pd.Series:
    """The simulated figure where the engine ran, else the analytic one."""
    out = df[sim] if sim in df else pd.Series(np.nan, index=df.index)
    return out.where(out.notna(), df[analytic] if analytic in df else np.nan)


def answer(df: pd.DataFrame, per_hardware: bool = False, slo: dict | None = None) -> pd.DataFrame:
    """Ranked answer rows (ANSWER_COLUMNS) from a results table; ``slo`` (target name -> value)
    words the reason of a near miss that has none (analytic rows)."""
    if df.empty:
        return pd.DataFrame(columns=ANSWER_COLUMNS)
    d = df.assign(
        precision=df["weights_precision"].astype(str) + "/" + df["kv_precision"].astype(str) + sram_suffix(df)
        + spec_suffix(df),
        tok_s_per_user=_pick(df, "decode_tok_s_per_user_p50", "decode_tok_s_per_user_analytic"),
        ttft_p99_s=_pick(df, "ttft_p99_s", "ttft_analytic_s"),
        slo_pass=df["slo_pass"].fillna(False).astype(bool))
    keys = ["model", "context_tokens"]
    out = []
    for _, g in d.groupby(keys, sort=True, dropna=False):
        ok = g[g["slo_pass"]].sort_values(["cost_usd_per_mtok_out", "devices", "point"], kind="stable")
        # one row per distinct answer: two sweep values can resolve to the same deployment (plan
        # size's "fewest that fit" and its explicit count m), which is one choice, not two
        ok = ok.drop_duplicates(["hardware", "precision", "devices", "replicas", "tok_s_per_user", "ttft_p99_s",
                                 "cost_usd_per_mtok_out"])
        if per_hardware:
            ok = ok.groupby("hardware", sort=False).head(1)
        rows = [ok]
        for hw, h in g.groupby("hardware", sort=True):
            if not h["slo_pass"].any():  # say why this hardware has no answer: its nearest miss
                feasible = h[h["feasible"].fillna(False).astype(bool)]
                near = feasible.sort_values(["tok_s_per_user"], ascending=False, kind="stable") if len(feasible) \
                    else h
                rows.append(near.head(1))
        block = pd.concat(rows)
        block = block.assign(rank=[i + 1 if p else None for i, p in enumerate(block["slo_pass"])])
        out.append(block)
    res = pd.concat(out, ignore_index=True)
    res["rank"] = res["rank"].astype("Int64")
    res["reason"] = [r["reason"] if isinstance(r["reason"], str) and r["reason"] or r["slo_pass"]
                     else _missed(r, slo or {}) for _, r in res.iterrows()]
    for c in ANSWER_COLUMNS:
        if c not in res:
            res[c] = np.nan
    return res[ANSWER_COLUMNS]


def _missed(r, slo: dict) -> str:
    """Which SLO target the row misses, in words (for rows whose reason is empty)."""
    parts = []
    speed, ttft = r["tok_s_per_user"], r["ttft_p99_s"]
    target = slo.get("decode_tok_s_per_user_p50")
    if target and pd.notna(speed) and speed < target:
        parts.append(f"{_num(speed)} tok/s per user < {target:g}")
    target = slo.get("ttft_p99_s")
    if target and pd.notna(ttft) and ttft > target:
        parts.append(f"p99 TTFT {_num(ttft)} s > {target:g} s")
    return "misses the SLO" + (": " + "; ".join(parts) if parts else "")


def sram_suffix(df: pd.DataFrame) -> pd.Series:
    """" +N SRAM" for a row with N bonded SRAM layers, else ""."""
    if "hardware.bonded_sram.layers" not in df:
        return pd.Series("", index=df.index)
    b = pd.to_numeric(df["hardware.bonded_sram.layers"], errors="coerce").fillna(0).astype(int)
    return pd.Series(np.where(b > 0, " +" + b.astype(str) + " SRAM", ""), index=df.index)


def spec_suffix(df: pd.DataFrame) -> pd.Series:
    """" spec 3@0.77" for a row that assumes speculative decoding (draft tokens @ acceptance
    rate; MTP for DeepSeek), else "": its speed and $/M rest on that assumption, so a ranked
    row must say so next to rows that do not make it."""
    n_col, a_col = "deployment.spec_decode.draft_tokens", "deployment.spec_decode.acceptance_rate"
    if n_col not in df:
        return pd.Series("", index=df.index)
    n = pd.to_numeric(df[n_col], errors="coerce")
    a = pd.to_numeric(df[a_col], errors="coerce") if a_col in df else pd.Series(np.nan, index=df.index)
    return pd.Series([f" spec {int(k)}@{r:g}" if pd.notna(k) and k > 0 else "" for k, r in zip(n, a)],
                     index=df.index)


COST_NOTE = ("$/M out: the $/h divided between output and input tokens at the price ratio "
             "(economics.price_ratio; columns.md, cost_usd_per_mtok_out), not $/h over output tokens alone; "
             "'spec N@a': assumes speculative decoding, N drafted tokens accepted at rate a.")


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or pd.isna(v):
        return "-"
    v = float(v)
    if v == int(v) and abs(v) >= 1:
        return f"{int(v):,}"
    return f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


def text(ans: pd.DataFrame, slo: dict | None = None, top: int = 10) -> str:
    """The answer as an aligned plain-text table, one block per model and context, reasons below;
    at most ``top`` ranked rows per block (the rest are in answer.csv)."""
    if ans.empty:
        return "no points\n"
    head = ("rank", "hardware", "precision", "devices", "replicas", "tok/s/user", "p99 TTFT s", "$/M out",
            "kW", "bottleneck", "")
    lines = []
    for (model, ctx), g in ans.groupby(["model", "context_tokens"], sort=True, dropna=False):
        title = f"{model}, context {_num(ctx)} tokens"
        if slo:
            title += "; SLO " + ", ".join(f"{k} {v:g}" for k, v in slo.items())
        analytic = (g["throughput_source"] == "analytic").all()
        if analytic:
            title += " (analytic: closed form, no queueing)"
        ranked = g["rank"].notna()
        hidden = max(0, int(ranked.sum()) - top)
        g = g[~ranked | (g["rank"] <= top)]
        rows = [head]
        notes = [f"  ... {hidden} more ranked configurations in answer.csv"] if hidden else []
        for _, r in g.iterrows():
            flag = "HYPOTHETICAL" if str(r["hypothetical"]) == "True" else ""
            if not r["slo_pass"]:
                flag = (flag + " " if flag else "") + "no config meets the SLO"
                notes.append(f"  {r['hardware']}: {r['reason'] or 'misses the SLO'}")
            if r["throughput_source"] == "analytic" and not analytic:
                flag = (flag + " " if flag else "") + "(analytic)"
            rows.append((str(r["rank"]) if pd.notna(r["rank"]) else "-", str(r["hardware"]), str(r["precision"]),
                         _num(r["devices"]), _num(r["replicas"]), _num(r["tok_s_per_user"]),
                         _num(r["ttft_p99_s"], 4), _num(r["cost_usd_per_mtok_out"], 4), _num(r["power_kw"]),
                         str(r["bottleneck"]) if pd.notna(r["bottleneck"]) else "-", flag))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines.append(title)
        lines += ["  " + "  ".join(v.rjust(w) if 3 <= i <= 8 else v.ljust(w)
                                   for i, (v, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
        lines += notes
        lines.append("")
    lines.append(COST_NOTE)
    return "\n".join(lines) + "\n"
