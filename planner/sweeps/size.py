"""``plan size``: the question in one command, answered by an ordinary sweep built in memory.

Why a sweep and not a special path: the answer must be the number ``plan sweep`` would give
for the same configuration, so this only writes the scenario a person would have written
(hardware x precision x sensible device counts, ``capacity.search`` with the SLO) and runs it
through the same runner, store and tables.

Sensible counts, per hardware and precision, from the analytic fewest-devices-that-fit ``m``:
wafers: ``null`` (one pipeline sized for all the users), ``m`` and ``2m``; GPUs: ``m``, ``2m``
and the whole scale-up domain (e.g. 72 on GB200 NVL72) when larger.
Default precisions: wafers bf16, fp8, fp4 (storage-only where the wafer lacks the rate);
GPUs with native FP4: fp8, nvfp4; others bf16, fp8. KV at the weights' precision, at least fp8.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from planner import catalog
from planner.config.errors import ConfigError, Problem, beyond_window, did_you_mean
from planner.config.schema import PRECISIONS, HardwareSpec
from planner.physics.point import Config
from planner.plan.estimate import estimate
from planner.sweeps import runner
from planner.sweeps.answer import answer
from planner.sweeps.export import write_csv

DEFAULT_HARDWARE = ("cs3", "b200", "gb200-nvl72")
PREFILL_CHUNK = 8192  # as the main job: fewer simulated rounds per prompt


def _precisions(hw: HardwareSpec, asked: list[str] | None) -> list[str]:
    if asked:
        return list(asked)
    if hw.kind == "wafer":
        return ["bf16", "fp8", "fp4"]
    return ["fp8", "nvfp4"] if "fp4" in hw.compute.peaks() else ["bf16", "fp8"]


def _counts(cfg: Config, hw: HardwareSpec) -> list[int | None]:
    est = estimate(cfg)
    if est.devices is None:  # does not place at all: one row says why
        return [None]
    m = est.devices
    if hw.kind == "wafer":
        return [None, m, 2 * m]
    domain = hw.scale_up.domain_size if hw.scale_up else 1
    a = cfg.model.attention  # a whole NVLink domain as one TP group only where it divides the heads
    whole = domain > m and not (a is not None and a.type == "gqa" and a.heads % domain)
    return sorted({m, 2 * m} | ({domain} if whole else set()))


def scenario(model: str, users: int, tok_s_per_user: float | None, ttft_p99_s: float | None,
             hardware: list[str] | None = None, context: int = 8192, output: int = 1024,
             precisions: list[str] | None = None, allow_beyond_window: bool = False) -> dict:
    """The scenario mapping ``plan size`` runs (what a person would write as YAML)."""
    if tok_s_per_user is None and ttft_p99_s is None:
        raise ConfigError([Problem("", None, None, "", "give an SLO: --tok-s-per-user and/or --ttft-p99")])
    if output >= context:
        raise ConfigError([Problem("", None, None, "--output", f"output tokens ({output}) must be < context "
                                                               f"({context})")])
    bad = [p for p in precisions or [] if p not in PRECISIONS]
    if bad:
        raise ConfigError([Problem("", None, None, "--precision", f"unknown precision '{bad[0]}'"
                                   + did_you_mean(bad[0], PRECISIONS) + f" (choose from {', '.join(PRECISIONS)})")])
    spec = catalog.load_model(model)
    if (why := beyond_window(context, spec)) and not allow_beyond_window:
        raise ConfigError([Problem("", None, None, "--context", why
                                   + "; add --allow-beyond-window to plan it anyway")])
    groups = []
    for name in hardware or DEFAULT_HARDWARE:
        hw = catalog.load_hardware(name)
        if not isinstance(hw, HardwareSpec):
            raise ConfigError([Problem("", None, None, "--hardware", f"'{name}' is a {hw.kind} option, not a device")])
        for p in _precisions(hw, precisions):
            cfg = Config(spec, hw, weights=p, context=context, output=output, batch=1, prefill_chunk=PREFILL_CHUNK)
            groups.append({"name": f"{hw.name}-{p}", "axes": {
                "deployment.hardware": [hw.name], "deployment.precision": [{"weights": p}],
                "deployment.count": _counts(cfg, hw)}})
    slo = {k: v for k, v in (("decode_tok_s_per_user_p50", tok_s_per_user), ("ttft_p99_s", ttft_p99_s))
           if v is not None}
    ctx = f"{context // 1024}k" if context % 1024 == 0 else str(context)
    # the rest of the question in a short digest, so another SLO, hardware list or precision
    # gets its own folder (the same question re-asked reuses its own)
    question = json.dumps([slo, hardware, precisions, output, allow_beyond_window], sort_keys=True)
    tag = hashlib.sha256(question.encode()).hexdigest()[:6]
    return {
        "name": f"size-{spec.name}-{users}users-{ctx}-{tag}",
        "description": f"plan size: {spec.name} for {users:,} users, context {context:,}, SLO "
                       + ", ".join(f"{k} {v:g}" for k, v in slo.items()),
        "model": spec.name,
        "deployment": {"hardware": (hardware or DEFAULT_HARDWARE)[0], "prefill_chunk_tokens": PREFILL_CHUNK},
        "workload": {"context_tokens": context, "output_tokens": output, "concurrent_users": users,
                     **({"allow_beyond_window": True} if allow_beyond_window else {})},
        "slo": slo,
        "capacity": {"search": True},
        "sweep": groups,
    }


def run(mapping: dict, out: str | Path | None = None, quiet: bool = False, jobs: int | None = None,
        simulate: bool | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(answer, results, folder): the sweep's usual files plus answer.csv (the ranked answer)."""
    folder = Path(out) if out else Path("outputs") / mapping["name"]
    df, folder = runner.run(mapping, folder, quiet=quiet, jobs=jobs, simulate=simulate)
    ans = answer(df, slo=mapping.get("slo"))
    write_csv(ans, folder / "answer.csv")
    return ans, df, folder
