#!/usr/bin/env python3
"""Generate a GPU step-time calibration grid with NVIDIA AIConfigurator.

What it does
------------
For each GPU system (H100 / H200 / B200 / GB200), model, weight/KV precision and
parallelism in the grid below, this script asks AIConfigurator for

* ``tpot_s``: the mean per-step decode latency of a *static* batch of ``batch``
  requests, averaged over the ``output`` decode steps while the KV cache grows
  from ``prompt`` to ``prompt + output`` tokens (AIConfigurator ``static_gen``
  mode, i.e. ``InferenceSession.run_static``; TPOT = generation latency /
  (output - 1)); and
* ``ttft_s``: the prefill latency of one ``prompt``-token request at batch 1
  (``static_ctx`` mode).

It calls ``aiconfigurator.cli.api.cli_estimate(mode="static_gen"|"static_ctx")``,
the public single-point wrapper around ``InferenceSession.run_static`` (fixed
batch, no search, no in-flight-batching scheduler), which also applies
AIConfigurator's own quant/MoE-communication resolution for the checkpoint.
Its predictions are sums of per-kernel latencies interpolated from tables
measured on real H100/H200/B200/GB200 silicon with TensorRT-LLM
(``database_mode=SILICON``: a combination with no measured table raises and
is skipped, not extrapolated). Speculative decoding / MTP is off (``nextn=0``).
Rows that do not fit in GPU memory (AIConfigurator's memory model) are skipped.

Values are written in SECONDS to a CSV (default
``hardware_specs/calibration_aic.csv``) with the columns in ``COLUMNS``;
``role`` is ``calibrate``. ``batch`` is the replica-wide static batch: with
attention data parallelism (DeepSeek ``attn dpN``) it is N x the per-rank
batch, which ``notes`` records. ``count`` is the GPUs of one model replica
(tp x attention-dp). ``date`` is the run date (the package's release date is
not recorded offline). A summary of skipped combinations goes to stderr.

AIConfigurator is a data-making tool only: it is NOT a dependency of the
planner or its tests, and this script never imports ``planner``.

Install (in its own venv, outside the repository)
-------------------------------------------------
    python3 -m venv /tmp/aic-venv
    /tmp/aic-venv/bin/pip install aiconfigurator==0.12.0

Regenerate (from the repository root; 336 s on 2 cores on 2026-12-01)
----------------------------------------------------------------------
    /tmp/aic-venv/bin/python tools/aic_grid.py --out hardware_specs/calibration_aic.csv

Options: ``--hardware h100,b200`` / ``--models llama-3.1-8b`` restrict the grid,
``--quick`` runs batch 1 at 1024/1024 only (smoke test), ``--routing balanced`` routes every
MoE kernel's tokens evenly over the experts instead of AIConfigurator's own power law
(``--routing power_law``, the default: alpha 1.2 for generic MoE models, 1.01 for DeepSeek) and
marks those rows ``routing: balanced``, which ``plan calibrate`` predicts with ``ep_imbalance`` 1.
``--restamp CSV`` re-applies columns and roles to an existing grid, keeping its routing marks.
"""
from __future__ import annotations

import argparse
import collections
import csv
import datetime as _dt
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ("date", "source", "hardware", "count", "model", "precision", "kv_precision", "metric", "value",
           "batch", "context", "prompt", "output", "software", "spec_draft_tokens", "spec_acceptance",
           "spec_draft_layers", "spec_draft_params", "attention_parallel", "routing", "role", "notes")

BACKEND = "trtllm"

# our hardware name -> AIConfigurator system name
SYSTEMS = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "gb200-nvl72": "gb200"}
BLACKWELL = {"b200", "gb200-nvl72"}

# our model name -> our precision -> (AIConfigurator model path, explicit quant overrides).
# Anything not overridden is inferred by AIConfigurator from the checkpoint config
# (bf16 checkpoints: everything bfloat16; FP8/NVFP4 checkpoints: their quant config).
_FP8_DENSE = {"gemm_quant_mode": "fp8_static", "kvcache_quant_mode": "fp8", "fmha_quant_mode": "fp8"}
_NVFP4_DENSE = {"gemm_quant_mode": "nvfp4", "kvcache_quant_mode": "fp8", "fmha_quant_mode": "fp8"}
VARIANTS: dict[str, dict[str, tuple[str, dict]]] = {
    "llama-3.1-8b": {"bf16": ("meta-llama/Meta-Llama-3.1-8B", {}),
                     "fp8": ("meta-llama/Meta-Llama-3.1-8B", _FP8_DENSE),
                     "nvfp4": ("meta-llama/Meta-Llama-3.1-8B", _NVFP4_DENSE)},
    "llama-3.1-70b": {"bf16": ("meta-llama/Meta-Llama-3.1-70B", {}),
                      "fp8": ("meta-llama/Meta-Llama-3.1-70B", _FP8_DENSE),
                      "nvfp4": ("meta-llama/Meta-Llama-3.1-70B", _NVFP4_DENSE)},
    "llama-3.1-405b": {"fp8": ("meta-llama/Meta-Llama-3.1-405B", _FP8_DENSE)},
    "qwen3-235b-a22b": {"bf16": ("Qwen/Qwen3-235B-A22B", {}),
                        "fp8": ("Qwen/Qwen3-235B-A22B-FP8", {}),
                        "nvfp4": ("nvidia/Qwen3-235B-A22B-NVFP4", {})},
    "deepseek-v3": {"fp8": ("deepseek-ai/DeepSeek-V3", {}),
                    "nvfp4": ("nvidia/DeepSeek-V3.1-NVFP4", {})},
    "gpt-oss-120b": {"mxfp4": ("openai/gpt-oss-120b", {})},
}

MOE_MODELS = {"qwen3-235b-a22b", "deepseek-v3", "gpt-oss-120b"}  # the grid's mixture-of-experts models

# (prompt, output, tpot batches for tp configs, tpot per-rank batches for attention-dp configs)
WORKLOADS = [(1024, 1024, (1, 4, 16, 64, 256), (1, 4, 16, 32)),
             (8192, 1024, (1, 16, 64), (1, 8))]
QUICK_WORKLOADS = [(1024, 1024, (1,), (1,))]


@dataclass(frozen=True)
class Par:
    tp: int = 1
    dp: int = 1  # attention data parallel
    moe_ep: int | None = None
    moe_tp: int | None = None

    @property
    def count(self) -> int:
        return self.tp * self.dp

    def label(self) -> str:
        if self.dp > 1:
            return f"attn dp{self.dp} + ep{self.moe_ep}"
        s = f"tp{self.tp}"
        if self.moe_ep:
            s += f" (moe ep{self.moe_ep}" + (f" tp{self.moe_tp}" if (self.moe_tp or 1) > 1 else "") + ")"
        return s

    def kwargs(self) -> dict:
        kw = {"tp_size": self.tp, "pp_size": 1, "attention_dp_size": self.dp}
        if self.moe_ep is not None:
            kw["moe_ep_size"] = self.moe_ep
            kw["moe_tp_size"] = self.moe_tp or 1
        return kw


@dataclass
class Case:
    hardware: str
    model: str
    precision: str
    par: Par
    note: str = ""
    overrides: dict = field(default_factory=dict)  # extra quant overrides for every call
    ttft_overrides: dict = field(default_factory=dict)  # extra quant overrides for the prefill call only


def grid() -> list[Case]:
    """The calibration grid. Combinations AIConfigurator cannot serve are still listed
    (they are attempted, then skipped and counted) so the summary shows the gaps."""
    cases: list[Case] = []
    for hw in SYSTEMS:
        bw = hw in BLACKWELL
        gb = hw == "gb200-nvl72"
        low = ["nvfp4"] if bw else []
        # dense Llama
        for p in ["bf16", "fp8", *low]:
            cases.append(Case(hw, "llama-3.1-8b", p, Par(tp=1)))
        for p in ["bf16", "fp8"]:
            cases.append(Case(hw, "llama-3.1-8b", p, Par(tp=2)))
        for p in ["fp8", *low]:
            cases.append(Case(hw, "llama-3.1-70b", p, Par(tp=4)))
        for p in ["bf16", "fp8", *low]:
            cases.append(Case(hw, "llama-3.1-70b", p, Par(tp=8)))
        cases.append(Case(hw, "llama-3.1-405b", "fp8", Par(tp=8)))
        # Qwen3-235B-A22B: attention TP, experts EP. AIC models a GB200 node as 4 GPUs and has no
        # cross-node (EP>4) all-to-all data for Qwen3 there, so GB200 uses tp4/ep4.
        qpar = Par(tp=4, moe_ep=4, moe_tp=1) if gb else Par(tp=8, moe_ep=8, moe_tp=1)
        for p in ["bf16", "fp8", *low]:
            cases.append(Case(hw, "qwen3-235b-a22b", p, qpar))
        # DeepSeek-V3: attention DP + expert parallel (how the planner models it), plus TP8.
        # Context MLA is only measured with bf16 FMHA: force it for the prefill call.
        ds_ctx = {"fmha_quant_mode": "bfloat16"}
        if gb:
            ds = [("nvfp4", Par(dp=4, moe_ep=4, moe_tp=1)),
                  ("fp8", Par(dp=8, moe_ep=8, moe_tp=1)), ("nvfp4", Par(dp=8, moe_ep=8, moe_tp=1)),
                  ("nvfp4", Par(dp=16, moe_ep=16, moe_tp=1)), ("nvfp4", Par(dp=32, moe_ep=32, moe_tp=1))]
        else:
            ds = [("fp8", Par(dp=8, moe_ep=8, moe_tp=1)), ("fp8", Par(tp=8, moe_ep=8, moe_tp=1))]
            if bw:
                ds.insert(1, ("nvfp4", Par(dp=8, moe_ep=8, moe_tp=1)))
        for p, par in ds:
            cases.append(Case(hw, "deepseek-v3", p, par, ttft_overrides=ds_ctx))
        # gpt-oss-120b: MXFP4 experts, bf16 attention (only expert-parallel MoE tables exist: moe
        # ep = tp). Hopper has only the weight-only w4a16_mxfp4 MoE kernel; on Blackwell use
        # TRT-LLM's MXFP4 x MXFP8 MoE kernel (w4a8_mxfp4_mxfp8), ~3x faster than w4a16 there.
        oss = ({"moe_quant_mode": "w4a8_mxfp4_mxfp8"}, "Blackwell MXFP4xMXFP8 MoE kernel") if bw else ({}, "")
        for tp in (1, 2, 4, 8):
            cases.append(Case(hw, "gpt-oss-120b", "mxfp4", Par(tp=tp, moe_ep=tp, moe_tp=1),
                              note=oss[1], overrides=oss[0]))
    return cases


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("AICONFIGURATOR_LOG_LEVEL", "ERROR")


def _kv_label(mode: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8", "int8": "int8"}.get(mode, mode)


def _source_shares(lat: dict, src: dict) -> str:
    tot = sum(lat.values())
    if tot <= 0:
        return ""
    acc: dict[str, float] = collections.defaultdict(float)
    for k, v in lat.items():
        acc[src.get(k, "?")] += v
    return "/".join(f"{k} {100 * v / tot:.0f}%" for k, v in sorted(acc.items(), key=lambda kv: -kv[1]))


def _route(distribution: str) -> None:
    """Make every AIConfigurator model route tokens by ``distribution``. Its MoE kernel tables are
    measured under three routings (``balanced``, ``power_law_1.01``, ``power_law_1.2``); its models
    pick the power law (alpha 1.2 for generic MoE, 1.01 for DeepSeek) through the
    ``ModelConfig.workload_distribution`` default, which no API argument reaches (AIC 0.12.0)."""
    from aiconfigurator_core.sdk.config import ModelConfig

    init = ModelConfig.__init__

    def routed(self, *a, **k):
        init(self, *a, **k)
        self.workload_distribution = distribution

    ModelConfig.__init__ = routed


class Runner:
    def __init__(self, stride: int, routing: str):
        from aiconfigurator.cli.api import cli_estimate  # imported lazily: needs the aic venv
        from aiconfigurator.sdk.errors import PerfDataNotAvailableError

        if routing != "power_law":
            _route(routing)

        self.cli_estimate = cli_estimate
        self.no_data_exc = PerfDataNotAvailableError
        self.stride = stride

    def run(self, case: Case, mode: str, prompt: int, output: int, batch: int, overrides: dict):
        """Returns (result, None) or (None, skip reason)."""
        path, quant = VARIANTS[case.model][case.precision]
        kw = dict(case.par.kwargs(), **quant, **overrides)
        try:
            r = self.cli_estimate(path, SYSTEMS[case.hardware], mode=mode, backend_name=BACKEND,
                                  database_mode="SILICON", isl=prompt, osl=output, batch_size=batch,
                                  nextn=0, stride=self.stride, **kw)
        except self.no_data_exc as e:
            return None, "no data: " + _short(e)
        except Exception as e:  # noqa: BLE001 - any AIC failure is a skipped combination
            return None, f"error {type(e).__name__}: {_short(e)}"
        s = r.summary
        if s is not None and (s.check_oom() or s.check_kv_cache_oom()):
            return None, "does not fit in memory"
        return r, None


def _short(e: Exception) -> str:
    msg = " ".join(str(e).split())
    for cut in (" at /", " Try "):
        if cut in msg:
            msg = msg.split(cut)[0]
    return msg[:160]


def make_row(case: Case, r, metric: str, value_s: float, batch_global: int, per_rank: int,
             prompt: int, output: int, date: str, aic_version: str, routing: str) -> dict:
    raw = r.raw
    s = r.summary
    if metric == "tpot_s":
        shares = _source_shares(s.get_generation_latency_dict(), s.get_generation_source_dict())
    else:
        shares = _source_shares(s.get_context_latency_dict(), s.get_context_source_dict())
    quant = f"gemm {raw.get('gemm')}, moe {raw.get('moe')}, kv {raw.get('kvcache')}, fmha {raw.get('fmha')}"
    bits = [case.par.label()]
    if case.par.dp > 1:
        bits.append(f"per-rank batch {per_rank}")
    bits += [f"{BACKEND} {r.backend_version} static batch" + (" decode, mean step over OSL" if metric == "tpot_s"
                                                              else " prefill"),
             quant, f"mem {float(raw.get('memory', 0.0)):.1f} GiB/GPU", f"sources {shares}", "no MTP/spec"]
    if case.model in MOE_MODELS:
        bits.append(f"experts routed {routing.replace('_', ' ')}")
    for fb in r.moe_comm_fallbacks or ():
        bits.append(f"A2A {fb.comm_backend} substituted: measured ep{fb.measurement_ep_size}/"
                    f"{fb.measurement_node_num} node for ep{fb.requested_ep_size}/{fb.requested_node_num} nodes")
    if case.hardware == "gb200-nvl72" and case.par.count > 4:
        bits.append("AIC gb200 node = 4 GPUs")
    if case.note:
        bits.append(case.note)
    bits.append("date = run date")
    return {
        "date": date,
        "source": f"AIConfigurator {aic_version} ({BACKEND} {r.backend_version}, {SYSTEMS[case.hardware]} database)",
        "hardware": case.hardware, "count": case.par.count, "model": case.model, "precision": case.precision,
        "kv_precision": _kv_label(str(raw.get("kvcache"))), "metric": metric, "value": f"{value_s:.6g}",
        "batch": batch_global, "context": prompt + output, "prompt": prompt, "output": output,
        "software": "", "spec_draft_tokens": "", "spec_acceptance": "", "spec_draft_layers": "",
        "spec_draft_params": "", "attention_parallel": _attention(case.model, case.par.dp),
        "routing": routing if routing == "balanced" and case.model in MOE_MODELS else "",
        "role": "calibrate",
        "notes": "; ".join(bits),
    }


def _attention(model: str, dp: int) -> str:
    """How an MLA model's attention is parallel in this case (the planner's attention_parallel)."""
    if not model.startswith("deepseek"):
        return ""
    return "dp" if dp > 1 else "tp"


def assign_roles(rows: list[dict]) -> list[dict]:
    """Which grid rows the fit uses. All 700-odd would make every refit (and each fold of the
    cross-validation) minutes long, and neighbouring batches add little: per configuration
    (hardware, model, precision, parallelism) the fit takes the decode step at the smallest and
    the largest batch of the 1,024-token prompt, and the prefill of the 8,192-token prompt.
    Rows whose all-to-all timings AIConfigurator substituted from another node count are left
    out. The rest are kept as ``reference`` (shown, not predicted), with the reason."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if r["metric"] == "tpot_s" and int(r["prompt"]) == 1024:
            groups[(r["hardware"], r["model"], r["precision"], r["count"], r["attention_parallel"],
                    r["notes"].split(";")[0])].append(r)
    ends = set()
    for g in groups.values():
        b = sorted(g, key=lambda r: int(r["batch"]))
        ends.update({id(b[0]), id(b[-1])})
    for r in rows:
        keep = id(r) in ends or (r["metric"] == "ttft_s" and int(r["prompt"]) == 8192)
        if "substituted" in r["notes"]:
            keep, why = False, "all-to-all timings substituted from another node count"
        else:
            why = "grid point outside the calibration subset (see assign_roles)"
        r["role"] = "calibrate" if keep else "reference"
        if not keep and why not in r["notes"]:
            r["notes"] = f"{why}; {r['notes']}"
    return rows


def _write(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "hardware_specs" / "calibration_aic.csv"))
    ap.add_argument("--hardware", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    ap.add_argument("--models", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="batch 1 at 1024/1024 only (smoke test)")
    ap.add_argument("--stride", type=int, default=32, help="AIC decode-step sampling stride (default 32)")
    ap.add_argument("--routing", choices=("power_law", "balanced"), default="power_law",
                    help="how the MoE kernels' tokens are routed to experts (default power_law: "
                    "AIConfigurator's own; balanced: every expert the same load)")
    ap.add_argument("--date", default=_dt.date.today().isoformat(), help="date column (default: today)")
    ap.add_argument("--restamp", metavar="CSV", help="re-apply columns and roles to an existing grid file "
                    "(no AIConfigurator run) and write it to --out")
    args = ap.parse_args(argv)

    if args.restamp:
        with open(args.restamp, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r.setdefault("spec_draft_layers", "")
            r.setdefault("spec_draft_params", "")
            r.setdefault("routing", "")
            dp = 2 if "attn dp" in r["notes"] else 1
            r["attention_parallel"] = r.get("attention_parallel") or _attention(r["model"], dp)
        _write(Path(args.out), assign_roles(rows))
        return 0

    _quiet()
    try:
        from importlib.metadata import version
        aic_version = version("aiconfigurator")
        runner = Runner(args.stride, args.routing)
    except Exception as e:  # noqa: BLE001
        print(f"aiconfigurator is not importable ({e}).\nInstall it in its own venv:\n"
              "  python3 -m venv /tmp/aic-venv && /tmp/aic-venv/bin/pip install aiconfigurator==0.12.0\n"
              "and run this script with /tmp/aic-venv/bin/python.", file=sys.stderr)
        return 2

    hws = [h for h in args.hardware.split(",") if h]
    models = [m for m in args.models.split(",") if m]
    for h in hws:
        if h not in SYSTEMS:
            ap.error(f"unknown hardware {h!r}")
    for m in models:
        if m not in VARIANTS:
            ap.error(f"unknown model {m!r}")
    workloads = QUICK_WORKLOADS if args.quick else WORKLOADS
    cases = [c for c in grid() if c.hardware in hws and c.model in models]

    rows: list[dict] = []
    skipped: collections.Counter = collections.Counter()
    skipped_detail: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    attempts = 0
    t0 = time.time()
    for i, case in enumerate(cases, 1):
        n_before = len(rows)
        for prompt, output, tp_batches, dp_batches in workloads:
            per_rank_batches = dp_batches if case.par.dp > 1 else tp_batches
            jobs = [("ttft_s", "static_ctx", 1, {**case.overrides, **case.ttft_overrides})]
            jobs += [("tpot_s", "static_gen", b, case.overrides) for b in per_rank_batches]
            for metric, mode, per_rank, overrides in jobs:
                attempts += 1
                r, why = runner.run(case, mode, prompt, output, per_rank, overrides)
                key = (case.hardware, case.model, case.precision, case.par.label())
                if r is None:
                    reason = why.split(":")[0]
                    skipped[reason] += 1
                    skipped_detail[key][why] += 1
                    continue
                ms = r.tpot if metric == "tpot_s" else r.ttft
                if not ms or ms <= 0:
                    skipped["zero value"] += 1
                    skipped_detail[key]["zero value"] += 1
                    continue
                rows.append(make_row(case, r, metric, ms / 1000.0, per_rank * case.par.dp, per_rank,
                                     prompt, output, args.date, aic_version, args.routing))
        print(f"[{i}/{len(cases)}] {case.hardware:12s} {case.model:16s} {case.precision:6s} "
              f"{case.par.label():22s} rows +{len(rows) - n_before:3d}  ({time.time() - t0:.0f}s)",
              file=sys.stderr, flush=True)

    out = Path(args.out)
    _write(out, assign_roles(rows))

    print(f"\nwrote {len(rows)} rows to {out} ({attempts} attempts, {sum(skipped.values())} skipped, "
          f"{time.time() - t0:.0f}s)", file=sys.stderr)
    for reason, n in skipped.most_common():
        print(f"  skipped {n:4d}: {reason}", file=sys.stderr)
    for key, reasons in skipped_detail.items():
        for why, n in reasons.items():
            print(f"    {' / '.join(key)}: {n} x {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
