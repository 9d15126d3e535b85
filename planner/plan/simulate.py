"""From a resolved scenario point to a simulation: replicas, arrival rate, samplers, round model."""
from __future__ import annotations

from pathlib import Path

from planner.physics.hardware import Infeasible
from planner.physics.point import Built, Config
from planner.config.schema import Arrival, LengthDist, Scenario
from planner.sim.engine import SimResult, SimSpec, simulate
from planner.sim.rounds import StepRounds
from planner.sim.workload import Sampler
from planner.plan.agents import plan_calls
from planner.plan.inputs import read_trace, sampler

DEFAULT_LOAD = 0.7


def arrival_of(sc: Scenario) -> Arrival:
    """The scenario's arrival process, or the default: a closed loop of ``concurrent_users``,
    else Poisson at the demand's rate (``workload.demand``, see demand_req_s), else at 70% of
    the analytic capacity."""
    w = sc.workload
    if w.arrival is not None:
        return w.arrival
    if w.concurrent_users is not None:
        return Arrival(process="closed", users=w.concurrent_users)
    return Arrival(process="poisson") if w.demand is not None else Arrival(process="poisson", load=DEFAULT_LOAD)


def closed_users(sc: Scenario) -> int:
    """Users of a closed loop (the arrival's, else ``concurrent_users``, else 1)."""
    return arrival_of(sc).users or sc.workload.concurrent_users or 1


def samplers(sc: Scenario, base_dir: Path) -> tuple[Sampler, Sampler]:
    """(prompt, output) length samplers: the distributions, else fixed at the workload's lengths."""
    w = sc.workload
    return (sampler(w.prompt_dist or LengthDist(dist="fixed", value=w.prompt), base_dir),
            sampler(w.output_dist or LengthDist(dist="fixed", value=w.output_tokens), base_dir))


def demand_req_s(sc: Scenario, base_dir: Path, lengths: tuple[Sampler, Sampler] | None = None) -> float | None:
    """Requests/s of the deployment that make up ``workload.demand`` (None without one): the
    demand over its kind of tokens in a mean request (output, or prompt + output)."""
    d = sc.workload.demand
    if d is None:
        return None
    prompt, output = lengths or samplers(sc, base_dir)
    return d.value / d.per_request(prompt.mean, output.mean)


def sim_spec(sc: Scenario, base_dir: Path, replicas: int, capacity_req_s: float,
             load: float | None = None, window: int = 131072) -> SimSpec:
    """The engine's input for a scenario point. ``load`` overrides the closed-loop users or the
    open arrival rate (the capacity search's probes); ``window`` is the model's context window
    (agent tasks compact against it unless they set their own).

    Closed loops simulate at least 3 x users requests and leave the first ``users`` out of the
    statistics: they all arrive at t=0, a start-up burst no steady state sees."""
    w, d = sc.workload, sc.deployment
    arr = arrival_of(sc)
    closed = arr.process == "closed"
    users = closed_users(sc)
    prompt, output = samplers(sc, base_dir)
    rate = arr.rate_per_s if arr.rate_per_s is not None else demand_req_s(sc, base_dir, (prompt, output)) \
        if w.demand is not None else (arr.load or DEFAULT_LOAD) * capacity_req_s
    if load is not None:
        users, rate = (int(load), rate) if closed else (users, load)
    n = max(w.requests or 2000, 3 * users) if closed else (w.requests or 2000)
    warmup = max(w.warmup_fraction, users / n) if closed else w.warmup_fraction
    plan, ag = None, w.agentic
    if ag is not None:  # agent tasks: their calls replace the request stream (statistics over all)
        plan = plan_calls(ag, ag.context_window or window, sc.seed, base_dir, ag.plan_factor)
        n, warmup = len(plan.session), 0.0
    trace = read_trace(arr.trace, base_dir) if arr.process == "trace" else None
    pre = w.prefix  # a shared one is also the round model's (the placement sized memory for it)
    return SimSpec(requests=n, process=arr.process, rate_per_s=rate, cv=arr.cv, users=users, think_s=arr.think_s,
                   prompt=prompt, output=output, trace=trace, replicas=replicas, router=d.router,
                   policy=d.kv_policy, offload_batching=d.offload_batching, max_batch=d.max_batch, chunk=d.prefill_chunk_tokens,
                   block_tokens=d.kv_block_tokens, warmup_fraction=warmup, seed=sc.seed, slo=sc.slo,
                   plan=plan, agents=ag.agents if ag else None, task_rate_per_s=ag.rate_per_s if ag else None,
                   kv_between_turns=ag.kv_between_turns if ag else "keep", cpus=ag.cpus if ag else None,
                   cpu_scope=ag.cpu_scope if ag else "cluster", cpu_speed=ag.cpu_speed if ag else 1.0,
                   call_overhead_s=d.call_overhead_s, cached_tokens=(pre.cached_tokens or 0) if pre else 0,
                   cached_share=(pre.cached_share or 0.0) if pre else 0.0)


def rounds_for(built: Built, cfg: Config, sc: Scenario) -> StepRounds:
    """The round model of one replica (its memo grid is reused by every simulation of the point).
    Raises Infeasible when the KV policy needs an external memory tier the hardware lacks."""
    ext = cfg.hardware.external_memory
    ag = sc.workload.agentic
    for needs, what in ((sc.deployment.kv_policy in ("swap", "offload"), f"kv_policy {sc.deployment.kv_policy}"),
                        (ag is not None and ag.kv_between_turns == "offload", "kv_between_turns offload")):
        if needs and not ext:
            raise Infeasible(f"{what} needs an external_memory section in the '{cfg.hardware.name}' hardware "
                             "spec (it has none)", limit="unsupported")
    if not ext:
        return StepRounds(built)
    return StepRounds(built, ext.capacity, ext.bandwidth, ext.shared_by, ext.port_bandwidth)


def run_sim(cfg: Config, sc: Scenario, base_dir: Path, replicas: int, capacity_req_s: float,
            rounds: StepRounds) -> SimResult:
    spec = sim_spec(sc, base_dir, replicas, capacity_req_s, window=cfg.model.context_window)
    return simulate(spec, rounds)
