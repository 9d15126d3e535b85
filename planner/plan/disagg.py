"""A disaggregated point: size the prefill and decode pools, run them together, cost them as one.

Sizing is analytic, then simulated and corrected (not the capacity search of single pools):

1. decode pool: users per decode replica U = the largest batch whose decode-only per-user
   speed (and TPOT) meets the SLO in closed form (rounds without anyone's prefill, which runs
   on the prefill pool: ``decode_only``), at most the sequences whose KV fits. A sequence
   spends t_dec = its KV transfer alone + (output - 1) / speed on the decode pool, so the
   users decoding at once are N t_dec / (TTFT alone + t_dec + think) for a closed loop of N
   users (Little's law), rate x t_dec for an open rate; replicas D = ceil(that / U), or
   ``deployment.replicas``. Unless D is configured the deployment is costed at its decode
   pool's capacity, D U sequences at once: requests/s lambda = D U / t_dec (as the capacity
   search costs a single pool at each replica's capacity). When even one sequence misses the
   target: one decode replica of one sequence, the lowest load, says by how much.
2. prefill pool: one prompt keeps a prefill replica busy s seconds (its rounds at an empty
   batch, summed as the simulator runs them); replicas P = the fewest with rho = lambda s / P
   < 1 whose p99 wait, each replica an M/D/1 queue of lambda / P (probe.md1_p99_wait), plus
   TTFT alone meets ``slo.ttft_p99_s`` (or ``prefill.replicas``).
3. with the simulator on, both pools run together (sim/disagg.py) under arrivals at lambda
   (the scenario's open process, else Poisson: a closed loop's users are the load that sizes
   it; Poisson is burstier, so this is the stricter test): while TTFT misses (or the queue
   grows), P grows to what the M/D/1 tail, scaled to the wait measured past one prompt alone,
   needs; while speed or TPOT misses, U shrinks in proportion (D grows, lambda with it). Once
   it passes, P is bisected down between a miss and the pass, each step aimed by the scaled
   tail (a random split is pessimistic next to least-outstanding routing). A run also misses
   when either pool's load at lambda, by what it measured (a prefill replica's busy seconds
   per prompt; the seconds a sequence holds a decode replica's KV), passes records.STABLE
   (95%): a run of a few seconds does not see a queue at 99% grow. At most
   ``capacity.max_probes`` runs; the answer is the last passing run (the last run when none
   passed). The first requests, as many as are in flight at lambda, are warm-up.

Costs: the $/h of both pools (economics.costs with the prefill pool as a second one) divided
among the tokens the deployment serves by the price ratio, as for any row.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from planner.physics.hardware import Infeasible
from planner.physics.point import Built, Config, build_point, memory_limit
from planner.plan.capacity import analytic_batch, analytic_values, slo_misses
from planner.plan.economics import costs
from planner.plan.estimate import Estimate, estimate, speed_band
from planner.plan.point import PointResult, Sizing, bands, carried, verdict
from planner.plan.pools import Pools, demand
from planner.plan.probe import md1_p99_wait, prompt_seconds, shorten
from planner.plan.scenario import Loaded, Point
from planner.plan.simulate import DEFAULT_LOAD, rounds_for, sim_spec
from planner.sim.batch import largest
from planner.sim.disagg import PrefillPool
from planner.sim.engine import SimResult, simulate
from planner.sim.records import STABLE
from planner.sim.rounds import StepRounds


def nic_rates(built: Built) -> tuple[float, float]:
    """(bytes/s all of a replica's NICs move for one sequence's KV together, bytes/s one
    sequence's KV can move at most). A sequence's KV is spread over the stages by their share,
    each stage's part over its devices' NICs (``io.bandwidth``, each direction) at once, so the
    replica moves KV as fast as its busiest stage allows: io / max(share / devices). KV under
    data-parallel attention lies on one GPU per stage: one sequence gets one NIC per stage."""
    pl, dev = built.placement, built.device
    per = np.array([s.kv_bytes_per_seq for s in pl.stages], float)
    share = per / per.sum()
    devs = np.array([s.devices for s in pl.stages], float)
    one = np.ones_like(devs) if pl.kind == "gpu" and pl.dp_attention else devs
    io = dev.io_bw_bytes_per_s
    return io / float(np.max(share / devs)), io / float(np.max(share / one))


def decode_only(cfg: Config, built: Built) -> Estimate:
    """The decode pool's analytic figures at ``cfg.batch``: rounds without others' prefills."""
    est = estimate(cfg, built)
    if not est.fits:
        return est
    r = built.steps.decode_round(est.batch, min(cfg.context, est.prompt_tokens + cfg.output / 2))
    speed = r.accepted_tokens / r.round_s
    lo, hi = speed_band(built.device, r)
    return dataclasses.replace(
        est, decode_tok_s_per_user=speed, tpot_s=1.0 / speed, aggregate_tok_s=est.batch * speed,
        input_tok_s=est.batch * speed * est.prompt_tokens / cfg.output, round_s=r.round_s, prefill_share=0.0,
        speed_band_low=lo, speed_band_high=hi, bottleneck=r.bottleneck,
        times=tuple((k.removeprefix("cycle_"), v) for k, v in r.parts.items()))


def prefill_replicas(lam: float, s: float, alone: float, target: float, scale: float = 1.0) -> int:
    """Fewest replicas loaded under STABLE (lam s / P) whose p99 wait (an M/D/1 queue of lam / P
    each, its tail x ``scale``) plus ``alone`` meets ``target``; out of reach (one prompt alone
    misses it): the replicas for utilisation DEFAULT_LOAD."""
    least = math.floor(lam * s / STABLE) + 1  # rho below STABLE: past it an open queue grows
    if alone >= target:
        return max(least, math.ceil(lam * s / DEFAULT_LOAD))

    def ok(p: int) -> bool:
        return scale * md1_p99_wait(lam * s / p, s) + alone <= target

    if ok(least):
        return least
    return largest(least, math.ceil(100 * lam * s) + 1, lambda p: not ok(p)) + 1  # at 1% load the tail is 0


@dataclasses.dataclass
class Plan:
    """One sizing of the two pools."""

    users: int  # sequences per decode replica
    replicas: int  # decode replicas
    prefill: int  # prefill replicas
    rate: float  # requests/s the deployment is sized for (lambda)


def run_disagg(loaded: Loaded, pt: Point, simulate_on: bool | None = None) -> tuple[PointResult, SimResult | None]:
    """(PointResult, the simulation reported or None) of a disaggregated point (module docstring)."""
    sc, d = pt.scenario, pt.scenario.deployment
    users, rate = demand(sc)
    fixed_d, fixed_p = d.replicas, d.disaggregated.prefill.replicas
    cfg = pt.config
    if cfg.count is None and users is not None:  # the decode pipeline holds its users (weights stored once)
        cfg = dataclasses.replace(cfg, min_sequences=math.ceil(users / (fixed_d or 1)))
    try:
        built = build_point(cfg)
    except Infeasible:
        built = None  # estimate says why
    est = estimate(cfg, built)
    if not est.fits:
        return verdict(PointResult(pt, feasible=False, reason=est.reason, bottleneck=est.bottleneck, estimate=est),
                       sc), None
    try:
        pb = build_point(pt.prefill)
    except Infeasible as e:
        limit = memory_limit(pt.prefill.hardware) if e.limit == "capacity" else "unsupported"
        return verdict(PointResult(pt, feasible=False, reason=f"prefill pool: {e}", bottleneck=limit, estimate=est),
                       sc), None
    run = sc.workload.simulate if simulate_on is None else simulate_on
    most, target = est.max_concurrent_sequences, sc.slo.ttft_p99_s
    rounds, pre_rounds = rounds_for(built, cfg, sc), StepRounds(pb)
    prompt, chunk = est.prompt_tokens, pt.prefill.prefill_chunk
    s = prompt_seconds(pre_rounds, 0, 0.0, prompt, chunk)[0]  # a prefill replica's seconds per prompt
    alone = pb.steps.ttft_s(prompt, 0, chunk)
    egress, seq_p = nic_rates(pb)
    ingress, seq_d = nic_rates(built)
    wire = float(rounds.kv_bytes(float(prompt)))
    path = min(egress, ingress, seq_p, seq_d)
    think = sc.workload.arrival.think_s if sc.workload.arrival is not None else 0.0
    miss = ""
    u = analytic_batch(cfg, built, sc.slo, most, figures=decode_only)
    if u == 0:
        one = decode_only(dataclasses.replace(cfg, batch=1), built).decode_tok_s_per_user
        miss = f"decode pool: one sequence alone decodes at {one:,.0f} tok/s, short of the SLO"
    if target is not None and alone >= target:
        miss = miss or f"prefill pool: one prompt alone takes {alone:.3g} s, over the TTFT target {target:g} s"

    def t_dec(b: int) -> float:  # a sequence's seconds on the decode pool: its transfer and its decode
        speed = decode_only(dataclasses.replace(cfg, batch=min(max(b, 1), most)), built).decode_tok_s_per_user
        return wire / path + (cfg.output - 1) / speed

    def busy(t: float) -> float:  # sequences decoding at once when one spends t on the decode pool
        return users * t / (alone + t + think) if users is not None else rate * t

    def sized(b: int) -> Plan:  # U = b per decode replica: the replicas and the rate (step 1)
        t = t_dec(b)
        if fixed_d:
            return Plan(math.ceil(busy(t) / fixed_d), fixed_d, 0, busy(t) / t)
        if sc.capacity.stop_at_target and b > busy(t):  # one replica carries them all: no more than asked
            b = max(1, math.ceil(busy(t)))
            t = t_dec(b)
        return Plan(b, math.ceil(busy(t) / b), 0, math.ceil(busy(t) / b) * b / t)

    # out of reach even at one sequence: one decode replica of one sequence, the lowest load, shows by how much
    plan, refuse = sized(u) if u or fixed_d else Plan(1, 1, 0, 1.0 / t_dec(1)), ""
    if plan.users > most:  # deployment.replicas set: more sequences decode at once than fit
        if run:
            plan.users = most  # the simulator queues the rest for room
        else:
            refuse = (f"{plan.users * fixed_d} sequences decoding at once need {math.ceil(plan.users * fixed_d / most)}"
                      f" decode replicas of {most}; {fixed_d} configured")
    plan.prefill = fixed_p or prefill_replicas(plan.rate, s, alone, target)
    pool = lambda p: PrefillPool(pre_rounds, p, egress, ingress, min(seq_p, seq_d), chunk)  # noqa: E731
    res, sims, limit, short = None, 0, "", ""
    if run and not refuse:
        res, sims, limit, short = _simulated(loaded, sc, cfg, rounds, pool, plan, sized, lambda b: alone + t_dec(b),
                                      alone, most, fixed_d, fixed_p)
    lam = res.summary.throughput_req_s if res is not None else plan.rate
    # users in flight (Little's law, as the capacity search reports an open load): rate x time in system
    flight = lam * (res.summary.mean_sojourn_s if res is not None else alone + t_dec(plan.users))
    dec = decode_only(dataclasses.replace(cfg, batch=min(plan.users, most)), built)
    pools = Pools(prefill_hardware=pt.prefill.hardware.name, decode_hardware=cfg.hardware.name,
                  prefill_replicas=plan.prefill, prefill_devices_per_replica=pb.placement.devices,
                  decode_devices=plan.replicas * est.devices,
                  prefill_precision=f"{pt.prefill.weights}/{pt.prefill.kv_precision}",
                  kv_transfer_bytes_per_seq=wire, kv_path_bytes_per_s=path, prefill_s_per_prompt=s,
                  prefill_ttft_analytic_s=alone, prefill_load=lam * s / plan.prefill,
                  hypothetical=bool(est.hypothetical or pt.prefill.hardware.hypothetical), users=flight,
                  sims=sims, limit=limit)
    full = decode_only(dataclasses.replace(cfg, batch=most), built)
    sizing = Sizing(replicas=plan.replicas, batch_per_replica=plan.users, concurrent_users=flight,
                    devices_per_replica=est.devices, devices=pools.decode_devices + pools.prefill_devices,
                    capacity_tok_s_analytic=full.aggregate_tok_s * plan.replicas,
                    aggregate_tok_s_analytic=plan.rate * cfg.output, input_tok_s_analytic=plan.rate * prompt,
                    cached_input_tok_s_analytic=0.0,  # no prefix caching here (pools.prefill_config refuses it)
                    capacity_req_s=plan.rate)
    result = PointResult(pt, feasible=not refuse, reason=refuse, bottleneck=dec.bottleneck,
                         estimate=dataclasses.replace(dec, ttft_s=alone), sizing=sizing, pools=pools,
                         throughput_source="analytic", throughput_out_tok_s=plan.rate * cfg.output,
                         throughput_in_tok_s=plan.rate * prompt, throughput_req_s=plan.rate,
                         throughput_cached_in_tok_s=0.0)
    if refuse:
        return verdict(dataclasses.replace(result, bottleneck=memory_limit(cfg.hardware)), sc), None
    if res is not None:
        sm = res.summary
        result = dataclasses.replace(result, sim=sm, throughput_source="sim",
                                     throughput_out_tok_s=sm.throughput_out_tok_s,
                                     throughput_in_tok_s=sm.throughput_in_tok_s, throughput_req_s=sm.throughput_req_s)
    # power: the decode pool's activity from its rounds (integrated where simulated); the prefill
    # pool is compute bound, so its active share is its load (busy share)
    u = built.steps.activity(result.sim.stage_activity) if result.sim else dec.activity
    also = ((pb.device, pools.prefill_devices, min(1.0, pools.prefill_load)),)
    try:
        c = costs(built.device, pools.decode_devices, sc.economics, result.throughput_out_tok_s,
                  result.throughput_in_tok_s, result.throughput_req_s, activity=u, also=also)
    except Infeasible as e:
        return verdict(dataclasses.replace(result, feasible=False, reason=str(e), bottleneck="unsupported"), sc), res
    speed = result.sim.decode_tok_s_per_user_p50 if result.sim else result.estimate.decode_tok_s_per_user
    b = bands(built.device, pools.decode_devices, sc.economics, result.estimate, speed, result.throughput_out_tok_s,
              result.throughput_in_tok_s, result.throughput_req_s, activity=u, also=also)
    result = verdict(dataclasses.replace(result, costs=c, bands=b, load=carried(result, sc)), sc)
    if short:  # the run reported missed (a pool loaded past STABLE, say, which the percentiles may not show)
        return dataclasses.replace(result, slo_pass=False, reason=miss or f"SLO missed by the sized deployment: "
                                   f"{short}"), res
    if not result.slo_pass and not result.reason:
        figures = {name: result.sim.get(name) for name, *_ in sc.slo.targets()} if result.sim else \
            analytic_values(result.estimate)
        missed = ", ".join(f"{m} {figures[m]:.3g} vs target {getattr(sc.slo, m)}"
                           for m in slo_misses(sc.slo, figures))
        result = dataclasses.replace(result, reason=miss or f"SLO missed by the sized deployment: {missed}")
    return result, res


def _simulated(loaded: Loaded, sc, cfg: Config, rounds, pool, plan: Plan, sized, sojourn, alone: float,
               most: int, fixed_d, fixed_p) -> tuple[SimResult, int, str, str]:
    """Step 3 of the module docstring: (the run reported, runs made, the SLO targets the last
    missing run missed, what the reported run missed or ""). ``plan`` is left at the reported
    run's sizing; ``sojourn(U)`` is a request's analytic time in the system (it sets the warm-up)."""
    slo, tol, budget, w = sc.slo, sc.capacity.tolerance, sc.capacity.max_probes, sc.workload
    target = slo.ttft_p99_s
    runs: list = []

    def probe():
        spec = sim_spec(sc, loaded.base_dir, plan.replicas, plan.rate, window=cfg.model.context_window)
        flight = math.ceil(plan.rate * sojourn(plan.users))  # in flight at lambda: the start-up fills the pools
        n = max(w.requests or 2000, 3 * flight)
        spec = dataclasses.replace(spec, process="poisson" if spec.process == "closed" else spec.process,
                                   rate_per_s=plan.rate, users=1, think_s=0.0, requests=n,
                                   warmup_fraction=max(w.warmup_fraction, flight / n))
        if w.requests is None:  # as many requests as the SLO's percentiles need
            spec = shorten(spec, slo, flight)
        res = simulate(spec, rounds, pool(plan.prefill))
        sm, q = res.summary, res.requests
        misses = slo_misses(slo, {name: sm.get(name) for name, *_ in slo.targets()})
        # each pool's load at the offered rate by what the run measured (a run of seconds does not
        # see a queue at 99% grow): a prefill replica's busy seconds per prompt, and the seconds a
        # sequence holds a decode replica's KV (transfer start to last token)
        work = sm.prefill_util_max * sm.sim_time_s * plan.prefill / sm.sim_requests
        multi = (q.output_tokens > 1).to_numpy()
        hold = float((q.finish_s - q.decode_join_s + q.kv_transfer_s)[multi].sum()) / len(q)
        load = (plan.rate * work / plan.prefill, plan.rate * hold / (plan.replicas * most))
        if sm.served_to_offered < STABLE or max(load) > STABLE:
            misses.append("unstable")
        # the M/D/1 tail scaled to the wait measured past one prompt alone
        model = md1_p99_wait(load[0], work)
        scale = max(sm.ttft_p99_s - alone, 0.0) / model if 0 < model < math.inf else 1.0
        runs.append((dataclasses.replace(plan), res, misses, work, scale, load))
        return runs[-1]

    # grow until it passes: prefill replicas for TTFT or a loaded prefill pool, fewer sequences
    # per decode replica for speed and TPOT or a loaded decode pool (its KV slots)
    at = probe()
    while at[2] and len(runs) < budget:
        _, res, misses, work, scale, load = at
        slow = [(res.summary.get(m) / getattr(slo, m)) ** (1 if m == "tpot_p99_s" else -1)
                for m in misses if m in ("tpot_p99_s", "decode_tok_s_per_user_p50")]
        busy_p = "unstable" in misses and load[0] >= load[1]
        moved = False
        if ("ttft_p99_s" in misses or busy_p) and not fixed_p and target:
            plan.prefill = max(plan.prefill + 1, prefill_replicas(plan.rate, work, alone, target, max(scale, 1.0)))
            moved = True
        if (slow or ("unstable" in misses and not busy_p)) and not fixed_d and plan.users > 1:
            b = max(1, min(plan.users - max(1, math.ceil(plan.users * tol)), math.floor(plan.users / max(slow or [1]))))
            new = sized(b)
            plan.users, plan.replicas, plan.rate = new.users, new.replicas, new.rate
            moved = True
        if not moved:
            break
        at = probe()
    best = at if not at[2] else None
    # then fewer prefill replicas while it passes: bisection between a miss (or the fewest that
    # keep the pool under STABLE of its capacity) and the pass, each step aimed where the
    # scaled tail meets the target
    if best is not None and not fixed_p and target:
        lo, hi = math.ceil(plan.rate * best[3] / STABLE) - 1, best[0].prefill
        while hi - lo > max(1, math.floor(tol * hi)) and len(runs) < budget:
            aim = prefill_replicas(plan.rate, best[3], alone, target, best[4])
            x = aim if lo < aim < hi else (lo + hi) // 2
            if x in (lo, hi):
                break
            plan.prefill = x
            at = probe()
            if at[2]:
                lo = x
            else:
                hi, best = x, at
    final = best or at
    plan.users, plan.replicas, plan.prefill, plan.rate = dataclasses.astuple(final[0])
    missed = [r[2] for r in runs if r[2]]
    why = [f"{m} {final[1].summary.get(m):.3g} vs target {getattr(slo, m)}" if m != "unstable" else
           f"a pool loaded past {STABLE:.0%} (prefill {final[5][0]:.0%}, decode KV {final[5][1]:.0%})"
           for m in final[2]]
    return final[1], len(runs), "+".join(missed[-1]) if missed else "", ", ".join(why)
