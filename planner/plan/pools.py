"""A disaggregated deployment's prefill pool, resolved when the scenario loads: its Config (the
scenario's model, context and prompt on the prefill hardware) and the checks that such a point
can be planned, each reported at the key that breaks it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from planner.config.errors import ConfigError
from planner.config.schema import Scenario
from planner.config.yamlio import Located
from planner.physics.point import Config
from planner.plan.resolve import device

AT = ("deployment", "disaggregated")


def demand(sc: Scenario) -> tuple[int | None, float | None]:
    """(closed-loop users, open arrival rate in requests/s): what a disaggregated deployment is
    sized for, one of the two (both None: neither is given)."""
    w = sc.workload
    arr = w.arrival
    if arr is None or arr.process == "closed":
        return (arr.users if arr is not None else None) or w.concurrent_users, None
    return None, arr.rate_per_s if arr.process in ("poisson", "gamma", "constant") else None


def prefill_config(base_dir: Path, sc: Scenario, loc: Located, decode: Config | None) -> Config | None:
    """The prefill pool's Config (None when the deployment is not disaggregated)."""
    dis = sc.deployment.disaggregated
    if dis is None or decode is None:
        return None
    problems = []
    if sc.workload.agentic is not None:
        problems.append(loc.problem(AT, "agent tasks run on one pool: set deployment.disaggregated: null"))
    if getattr(sc.workload, "prefix", None) is not None:
        problems.append(loc.problem(("workload", "prefix"), "prefix caching is not modelled on a disaggregated "
                                    "deployment yet: set workload.prefix: null or deployment.disaggregated: null"))
    if getattr(sc.workload, "demand", None) is not None:
        problems.append(loc.problem(("workload", "demand"), "a disaggregated deployment is sized for users or "
                                    "an arrival rate, not a demand in tokens/s: set workload.demand: null"))
    if sc.deployment.kv_policy != "wait":
        problems.append(loc.problem(("deployment", "kv_policy"), "a disaggregated deployment's decode pool "
                                    "runs kv_policy wait", sc.deployment.kv_policy, True))
    if demand(sc) == (None, None):
        problems.append(loc.problem(AT, "a disaggregated deployment is sized for workload.concurrent_users (a "
                                    "closed loop) or an arrival rate_per_s (poisson, gamma, constant), not a "
                                    "load share or a trace"))
    if dis.prefill.replicas is None and sc.slo.ttft_p99_s is None:
        problems.append(loc.problem(AT + ("prefill",), "sizing the prefill pool needs slo.ttft_p99_s (or set "
                                    "deployment.disaggregated.prefill.replicas)"))
    p = dis.prefill
    hw = device(p.hardware, p.software, base_dir, loc, AT + ("prefill", "hardware"), problems)
    if problems:
        raise ConfigError(problems)
    prec = p.precision or sc.deployment.precision
    # the same model, context and prompt; no draft head (speculative decoding is the decode
    # pool's), no bonded SRAM (an option of the decode wafers), at least one prompt's KV
    return dataclasses.replace(decode, hardware=hw, count=p.count, weights=prec.weights, kv=prec.kv,
                               mode=prec.mode, embeddings=prec.embeddings, batch=None, min_sequences=1,
                               bonded=None, bonded_layers=0, software=p.software, spec_decode=None,
                               microbatches=None, prefill_chunk=p.prefill_chunk_tokens or decode.prefill_chunk)


@dataclasses.dataclass(frozen=True)
class Pools:
    """What a results row says about a disaggregated deployment's two pools (plan/disagg.py)."""

    prefill_hardware: str
    decode_hardware: str
    prefill_replicas: int
    prefill_devices_per_replica: int
    decode_devices: int
    prefill_precision: str  # weights/KV of the prefill pool
    kv_transfer_bytes_per_seq: float  # one prompt's KV on the wire (the decode pool's bytes)
    kv_path_bytes_per_s: float  # one transfer alone: min(prefill NICs, decode NICs, one sequence's)
    prefill_s_per_prompt: float  # a prefill replica's busy seconds per prompt (prompts back to back)
    prefill_ttft_analytic_s: float  # one prompt on an idle prefill replica
    prefill_load: float  # requests/s x prefill_s_per_prompt / prefill_replicas (simulated rate where it ran)
    hypothetical: bool
    users: float  # users in flight the deployment carries (rate x time in system)
    sims: int  # simulations the sizing ran
    limit: str  # what bounded the sizing (SLO targets missed just past it), or ""

    @property
    def prefill_devices(self) -> int:
        return self.prefill_replicas * self.prefill_devices_per_replica

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        sims, limit, users = out.pop("sims"), out.pop("limit"), out.pop("users")
        out.update(disaggregated=True, hardware=f"{self.prefill_hardware}+{self.decode_hardware}",
                   prefill_devices=self.prefill_devices,
                   kv_transfer_analytic_s=self.kv_transfer_bytes_per_seq / self.kv_path_bytes_per_s)
        if sims:
            out.update(capacity_probes=sims, capacity_limit=limit, capacity_users=users)
        return out
