"""From a resolved scenario point to a simulation: replicas, arrival rate, samplers, round model."""
from __future__ import annotations

from pathlib import Path

from ..analytic import Config, build_point
from ..config.schema import Arrival, LengthDist, Scenario
from .engine import SimResult, SimSpec, simulate
from .rounds import StepRounds
from .workload import Sampler, read_trace

DEFAULT_LOAD = 0.7


def arrival_of(sc: Scenario) -> Arrival:
    """The scenario's arrival process, or the default: a closed loop of ``concurrent_users``,
    else Poisson at 70% of the analytic capacity."""
    if sc.workload.arrival is not None:
        return sc.workload.arrival
    if sc.workload.concurrent_users is not None:
        return Arrival(process="closed", users=sc.workload.concurrent_users)
    return Arrival(process="poisson", load=DEFAULT_LOAD)


def sim_spec(sc: Scenario, base_dir: Path, replicas: int, capacity_req_s: float) -> SimSpec:
    w, d = sc.workload, sc.deployment
    arr = arrival_of(sc)
    users = arr.users or w.concurrent_users or 1
    n = w.requests or (max(2000, 3 * users) if arr.process == "closed" else 2000)
    prompt = Sampler(w.prompt_dist or LengthDist(dist="fixed", value=w.prompt), base_dir)
    output = Sampler(w.output_dist or LengthDist(dist="fixed", value=w.output_tokens), base_dir)
    rate = arr.rate_per_s if arr.rate_per_s is not None else (arr.load or DEFAULT_LOAD) * capacity_req_s
    trace = read_trace(arr.trace, base_dir) if arr.process == "trace" else None
    return SimSpec(requests=n, process=arr.process, rate_per_s=rate, cv=arr.cv, users=users, think_s=arr.think_s,
                   prompt=prompt, output=output, trace=trace, replicas=replicas, router=d.router,
                   policy=d.kv_policy, max_batch=d.max_batch, chunk=d.prefill_chunk_tokens,
                   block_tokens=d.kv_block_tokens, warmup_fraction=w.warmup_fraction, seed=sc.seed, slo=sc.slo)


def run_sim(cfg: Config, sc: Scenario, base_dir: Path, replicas: int, capacity_req_s: float) -> SimResult:
    built = build_point(cfg)
    ext = cfg.hardware.external_memory
    rounds = StepRounds(built, ext.capacity if ext else 0.0, ext.bandwidth if ext else 0.0)
    if sc.deployment.kv_policy in ("swap", "offload") and not ext:
        raise ValueError(f"kv_policy {sc.deployment.kv_policy} needs an external_memory section in the "
                         f"'{cfg.hardware.name}' hardware spec")
    return simulate(sim_spec(sc, base_dir, replicas, capacity_req_s), rounds)
