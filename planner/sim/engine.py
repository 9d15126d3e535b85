"""Run a simulation: arrivals -> router -> replicas -> per-request records, summary, invariants.

Invariants are checked after every run (cheap), and a violation raises
:class:`InvariantError`: Little's law (the requests the replicas hold, observed at every
change and integrated, equal the requests' stamped sojourns summed; see littles_law),
the in-system counter's bookkeeping, conservation (arrived = finished + in flight at
every sample; sequence-rounds the replicas ran = decode rounds credited to requests),
tokens (every finished request generated exactly its output, within one speculative step),
KV never above capacity, non-negative queueing, and prefill (the tokens the replicas prefilled
= the requests' prompts less their cached prefixes, plus what preemptions made them prefill again).

Prefix caching: ``cached_tokens`` or ``cached_share`` of each prompt is found cached (its KV
present, not prefilled); a prefix shared by every request is the round model's
(``shared_tokens``, sized into its memory by the placement) and is held once per replica.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import simpy

from planner.config.schema import MAX_REQUESTS, PREFILL_CHUNK, SLO
from planner.sim.disagg import DecodeSide, PrefillPool, Split
from planner.sim.errors import InvariantError, TooLarge
from planner.sim.links import Link, Network
from planner.sim.records import Recorder, Summary, requests_frame, summarise, timeseries_frame
from planner.sim.replica import Replica
from planner.sim.router import Pool
from planner.sim.sessions import COMPACTION, CallPlan, TaskTimes, check_tasks, parts_from_calls, task_summary
from planner.sim.tasks import Tools, drive
from planner.sim.workload import Sampler, Trace, cached_prefix, interarrivals


@dataclass(frozen=True)
class SimSpec:
    requests: int
    process: str = "poisson"  # poisson | gamma | constant | trace | closed
    rate_per_s: float = 1.0
    cv: float = 1.0
    users: int = 1
    think_s: float = 0.0
    prompt: Sampler | None = None
    output: Sampler | None = None
    trace: Trace | None = None
    replicas: int = 1
    router: str = "least_outstanding"
    policy: str = "wait"
    max_batch: int | None = None
    chunk: int = PREFILL_CHUNK
    block_tokens: int = 256
    warmup_fraction: float = 0.1
    seed: int = 0
    slo: SLO = SLO()
    # agent tasks (sessions.py) instead of independent requests: the calls, who runs them
    # (agents back to back, or tasks arriving at task_rate_per_s) and the KV between turns
    plan: CallPlan | None = None
    agents: int | None = None
    task_rate_per_s: float | None = None
    kv_between_turns: str = "keep"
    cpus: int | None = None  # agent tasks' tool calls on a pool of CPUs (sim/tasks.py); None: unlimited
    cpu_scope: str = "cluster"  # cluster | replica
    cpu_speed: float = 1.0
    call_overhead_s: float = 0.0  # per agent call: client + API path before it reaches a replica
    offload_batching: str = "separate"  # kv_policy offload: KV-off-chip sequences decode apart, or the batch waits
    # prefix caching (independent requests): tokens of each prompt found cached, or a share of it
    cached_tokens: int = 0
    cached_share: float = 0.0


class _Start(simpy.events.Event):
    """Fires at creation, urgently, as the event that starts a SimPy process does: users started
    from it keep the order one process each would have (their starts ran back to back, before
    anything scheduled meanwhile)."""

    def __init__(self, env, callback):
        super().__init__(env)
        self.callbacks.append(callback)
        self._ok, self._value = True, None
        env.schedule(self, simpy.events.URGENT)


def _route(replicas: list[Replica], how: str, rid: int) -> Replica:
    if how == "round_robin" or len(replicas) == 1:
        return replicas[rid % len(replicas)]
    if how == "most_free_kv":  # free KV moves every round: a scan
        return max(replicas, key=lambda r: (r.free_kv(), -r.index))
    # least outstanding, lowest index on a tie: a heap the replicas keep up to date (sim/router.py)
    return (replicas[0].pool or Pool(replicas)).least()


def draw_lengths(spec: SimSpec, rng_p, rng_o) -> tuple[np.ndarray, np.ndarray]:
    if spec.trace is not None:
        n = min(spec.requests, len(spec.trace.arrival_s))
        return spec.trace.prompt_tokens[:n], spec.trace.output_tokens[:n]
    return spec.prompt.draw(rng_p, spec.requests), spec.output.draw(rng_o, spec.requests)


@dataclass
class SimResult:
    summary: Summary
    requests: pd.DataFrame
    ts_rows: list = field(repr=False)  # the time series' rows (Recorder.ts), made a table on first use
    tasks: TaskTimes | None = None

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """Per span start: time, replica, batch, queued, KV bytes (a capacity probe never asks)."""
        return timeseries_frame(self.ts_rows)


def simulate(spec: SimSpec, rounds, prefill: PrefillPool | None = None) -> SimResult:
    """Simulate ``spec`` on replicas whose hardware is ``rounds`` (StepRounds or ConstantRounds);
    with ``prefill``, they only decode, behind a prefill pool (sim/disagg.py)."""
    wall0 = time.perf_counter()
    r_arr, r_p, r_o = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3))
    plan = spec.plan
    n = len(plan.session) if plan is not None else spec.requests
    if n > MAX_REQUESTS:
        raise TooLarge(f"{n:,} requests to simulate, above the cap of {MAX_REQUESTS:,} (workload.requests; "
                       "closed loops run at least 3 x users, agent tasks every call)")
    skip = rounds.shared_tokens  # a prefix every request shares: held once, not per sequence
    if plan is not None:  # a call's KV covers its whole context; its prompt is set at admission
        prompts, outputs, cached = plan.ctx_before + plan.new, plan.output, np.zeros(n, np.int64)
    else:
        prompts, outputs = draw_lengths(spec, r_p, r_o)
        prompts, cached = cached_prefix(prompts, spec.cached_tokens, spec.cached_share, skip)
    env = simpy.Environment()
    rec = Recorder(env, prompts - cached, outputs, rounds.kv_bytes((prompts + outputs - skip).astype(float)),
                   spec.chunk, cached)
    if plan is not None:
        rec.session, rec.ctx_before, rec.new = plan.session.tolist(), plan.ctx_before.tolist(), plan.new.tolist()
        rec.cache_after = plan.cache_after.tolist()
        rec.kv_mode = spec.kv_between_turns
    kind = Replica if prefill is None else DecodeSide
    reps = [kind(env, i, rounds, rec, spec.policy, spec.max_batch, spec.chunk, spec.block_tokens,
                 spec.offload_batching) for i in range(spec.replicas)]
    rec.replicas = reps
    net = Network(env)
    wire(net, reps, rounds)
    split = None if prefill is None else Split(env, net, prefill, reps, rec, spec.block_tokens,
                                               lambda pool, rid: _route(pool, spec.router, rid))
    front = reps if split is None else split.prefill  # where requests arrive
    cap = reps[0].capacity
    worst = int(np.argmax(rec.kv_full))
    need = rec.kv_full[worst] + rounds.shared_bytes
    if need > cap:
        raise TooLarge(f"a request of {prompts[worst] + outputs[worst]} tokens needs {need:.3g} B of KV"
                       f"{' (the shared prefix included)' if skip else ''}, more than a replica holds ({cap:.3g} B)",
                       kv=True)

    home: dict[int, Replica] = {}  # a task's calls go where its KV is

    single = front[0] if len(front) == 1 else None

    def dispatch(rid: int) -> None:
        now = env.now
        rec.arrive(rid, now)
        s = rec.session[rid]
        r = home.get(s) if s >= 0 else None
        if r is None:
            r = single or _route(front, spec.router, rid)
            if s >= 0:
                home[s] = r
        rec.replica[rid] = r.index
        r.submit(rid)
        rec.observe(now, r)

    times = None
    if plan is not None:
        times = TaskTimes.empty(plan.tasks)
        _start_tasks(env, spec, plan, rec, home, dispatch, times, r_arr)
    elif spec.process == "closed":  # users as callbacks: a SimPy process each would cost more
        counter = iter(range(rec.n))  # than the rest of a request's events, for the same order

        def send(_event=None) -> None:
            """A user sends its next request (ids in sending order) and waits for the reply."""
            rid = next(counter, None)
            if rid is not None:
                ev = rec.waiters[rid] = env.event()
                ev.callbacks.append(replied)
                dispatch(rid)

        def replied(_event) -> None:
            if spec.think_s > 0:
                env.timeout(spec.think_s).callbacks.append(send)
            else:
                send()

        def start(_event) -> None:  # every user sends its first request at t = 0, in user order
            for _ in range(min(spec.users, rec.n)):
                send()

        _Start(env, start)
    else:
        if spec.trace is not None:
            gaps = np.diff(np.concatenate([[0.0], spec.trace.arrival_s[:rec.n]]))
        else:
            gaps = interarrivals(spec.process, spec.rate_per_s, spec.cv, r_arr, rec.n)

        def source():
            for rid, gap in enumerate(gaps.tolist()):
                yield env.timeout(gap)
                dispatch(rid)

        env.process(source())
    env.run(until=rec.all_done)
    rec._tick(env.now)
    rec.observe(env.now)
    rec.close()
    wall = time.perf_counter() - wall0
    check_invariants(rec, rec.replicas)
    summary = summarise(rec, reps, spec, wall)
    if split is not None:
        split.check()
        measured = np.arange(rec.n) >= int(spec.warmup_fraction * rec.n)
        summary = replace(summary, **split.figures(measured, summary.sim_time_s))
    if plan is not None:
        parts_from_calls(times, plan, rec.arrival, rec.admit, rec.first, rec.finish)
        check_tasks(times)
        summary = replace(summary, tasks=task_summary(times, plan), kv_evictions=rec.pin_evictions)
    frame = requests_frame(rec) if split is None else split.columns(requests_frame(rec))
    return SimResult(summary, frame, rec.ts, times)


def wire(net: Network, reps: list[Replica], m) -> None:
    """Each replica's off-chip KV path (``m.link_bytes_per_s`` each direction), through the
    external tier's port it shares with ``m.replicas_per_tier`` replicas (when the port has a
    limit of its own): ``to_tier`` for KV leaving, ``from_tier`` for KV coming in."""
    ports: dict[int, tuple[Link, Link]] = {}
    for r in reps:
        up, down = Link(m.link_bytes_per_s, f"replica {r.index} out"), Link(m.link_bytes_per_s, f"replica {r.index} in")
        g = r.index // m.replicas_per_tier
        if math.isfinite(m.tier_bytes_per_s) and g not in ports:
            ports[g] = (Link(m.tier_bytes_per_s, f"tier port {g} in"), Link(m.tier_bytes_per_s, f"tier port {g} out"))
        port = ports.get(g)
        r.net, r.to_tier, r.from_tier = net, (up, port[0]) if port else (up,), (port[1], down) if port else (down,)


def _start_tasks(env, spec: SimSpec, plan: CallPlan, rec: Recorder, home: dict, dispatch, times: TaskTimes,
                 rng) -> None:
    """Agents run tasks back to back (or tasks arrive as a Poisson process); a task makes its
    calls in order, each after the previous call's reply and tool call. A call first pays the
    per-call overhead (outside the model); a tool call runs on the CPU pool (sim/tasks.py)."""
    offload = spec.kv_between_turns == "offload"
    tools = Tools(env, times, spec.cpus, spec.cpu_scope, spec.cpu_speed)
    over = spec.call_overhead_s

    def task(s: int):
        times.start[s] = env.now
        i0, k = int(plan.first[s]), int(plan.count[s])
        for rid in range(i0, i0 + k):
            if over > 0:
                yield env.timeout(over)
                times.parts["compaction" if plan.kind[rid] == COMPACTION else "overhead"][s] += over
            ev = env.event()
            rec.waiters[rid] = ev
            dispatch(rid)
            yield ev
            tool = float(plan.tool_after[rid])
            if tool <= 0:
                continue
            if offload and plan.cache_after[rid] and rid + 1 < i0 + k:
                # the KV left over the link when the call finished (AgentKV.park), sharing it with
                # every other transfer; it comes back once the tool is done and it has left
                r, t0 = home[s], env.now
                out = r.kv.agents.outbound.pop(s)
                before = times.parts["tool"][s] + times.parts["tool_wait"][s]
                yield from tools.call(s, tool, r.index)
                if not out.done.processed:
                    yield out.done
                r.xfer_bytes += 2 * out.size
                yield r.net.start(out.size, r.from_tier).done
                spent = times.parts["tool"][s] + times.parts["tool_wait"][s] - before
                times.parts["kv_transfer"][s] += env.now - t0 - spent
                rec.restored[rid + 1] = True
            else:
                yield from tools.call(s, tool, home[s].index)
        times.end[s] = env.now

    gaps = rng.exponential(1.0 / spec.task_rate_per_s, plan.tasks) if spec.task_rate_per_s is not None else None
    drive(env, plan.tasks, spec.agents, spec.task_rate_per_s, gaps, task)


def check_invariants(rec: Recorder, reps: list[Replica]) -> None:
    if not (rec.arrived == rec.finished == rec.n and rec.in_system == 0):
        raise InvariantError(f"requests in {rec.arrived} != finished {rec.finished} (+{rec.in_system} in flight)")
    bookkeeping(rec)
    littles_law(rec)
    a = reps[0].a
    short = rec.generated < rec.output
    over = rec.generated >= rec.output + max(1, math.ceil(a))
    if short.any() or over.any():
        i = int(np.argmax(short | over))
        raise InvariantError(f"request {i} generated {rec.generated[i]} tokens for {rec.output[i]} requested")
    fed, want = sum(r.prefilled for r in reps), int(rec.prompt.sum()) + rec.reprefill
    if fed != want:
        raise InvariantError(f"prefill: the replicas prefilled {fed} tokens; the prompts less their cached "
                             f"prefixes, plus recomputes, are {want}")
    ran = sum(r.seq_rounds for r in reps)
    if ran != int(rec.decode_rounds.sum()):
        raise InvariantError(f"sequence-rounds run {ran} != decode rounds credited to requests "
                             f"{int(rec.decode_rounds.sum())}")
    eps = 1e-9
    if (rec.admit < rec.arrival - eps).any() or (rec.first < rec.admit - eps).any() \
            or (rec.finish < rec.first - eps).any():
        raise InvariantError("negative queueing: a request was admitted, answered or finished before it arrived")
    for r in reps:
        if r.kv_peak > r.capacity * (1 + 1e-9):
            raise InvariantError(f"replica {r.index}: KV peak {r.kv_peak:.4g} B above capacity {r.capacity:.4g} B")


def bookkeeping(rec: Recorder) -> None:
    """The recorder's in-system counter, integrated, equals the stamps' summed sojourn. An
    identity (the counter moves when the stamps are written): it catches a stamp written
    without the counter, not a request credited at the wrong time."""
    sojourn = float((rec.finish - rec.arrival).sum())
    if not math.isclose(rec.area, sojourn, rel_tol=1e-9, abs_tol=1e-9):
        raise InvariantError(f"bookkeeping: time-integral of the in-system counter {rec.area:.9g} != "
                             f"summed sojourn {sojourn:.9g}")


def littles_law(rec: Recorder) -> None:
    """L = lambda W, two independent ways. L: the requests the replicas' own queues, prompts,
    landings and batches held (``outstanding``), observed at every instant that count can
    change (each arrival, span start and finish) and integrated over the run, so the sampled
    integral is exact and the tolerance is float rounding. lambda W: the requests' stamped
    sojourns summed (n/T x mean sojourn, times T). A request credited (stamped and counted)
    before the replica lets go of it, or after, breaks it. Also one-sided: the time series'
    batch + queued, sampled at span starts, misses landing prompts and arrivals between
    samples but can never count more than the requests held."""
    sojourn = float((rec.finish - rec.arrival).sum())
    end = float(rec.finish.max())
    tol = 1e-9 * max(sojourn, end) + 1e-12
    if abs(rec.held_area - sojourn) > tol:
        raise InvariantError(f"Little's law: requests held by the replicas x time {rec.held_area:.9g} != "
                             f"lambda W (summed sojourn) {sojourn:.9g}")
    ts = rec.ts_area + sum(r.ts_n * (end - r.ts_t) for r in rec.replicas)
    if ts > rec.held_area + tol:
        raise InvariantError(f"Little's law: the time series' batch + queued x time {ts:.9g} exceeds the "
                             f"requests held x time {rec.held_area:.9g}")
