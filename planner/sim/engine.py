"""Run a simulation: arrivals -> router -> replicas -> per-request records, summary, invariants.

Invariants are checked after every run (cheap), and a violation raises
:class:`InvariantError`: Little's law (the engine's own in-system count, integrated over
time, equals the requests' summed sojourn), conservation (arrived = finished + in flight at
every sample; sequence-rounds the replicas ran = decode rounds credited to requests),
tokens (every finished request generated exactly its output, within one speculative step),
KV never above capacity, and non-negative queueing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from ..config.schema import SLO
from .replica import InvariantError, Replica
from .sessions import TaskTimes, CallPlan, check_tasks, parts_from_calls, task_summary
from .workload import Sampler, Trace, interarrivals


class Stalled(RuntimeError):
    """The simulation stopped making progress (an event budget far above any sane run)."""


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
    chunk: int = 8192
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


class Recorder:
    """Per-request arrays (indexed by request id, ids in arrival order) and run counters."""

    def __init__(self, env, prompts: np.ndarray, outputs: np.ndarray, kv_full: np.ndarray, chunk: int = 8192):
        n = len(prompts)
        self.env, self.n = env, n
        self.prompt, self.output = prompts.astype(np.int64), outputs.astype(np.int64)
        self.kv_full = [float(x) for x in kv_full]  # KV bytes at prompt + output, per request
        self.arrival, self.admit, self.first, self.finish = (np.full(n, -1.0) for _ in range(4))
        self.generated, self.decode_rounds = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.preemptions, self.swaps, self.replica = (np.zeros(n, np.int64) for _ in range(3))
        self.events = 0
        # far above any sane run: 200 per request, plus a few per prefill chunk (long prompts
        # overlapping other users' decode advance a round at a time)
        self.event_limit = 200 * n + 8 * int(prompts.sum() // max(chunk, 1)) + 100_000
        self.arrived = self.finished = 0
        self.in_system, self.area, self.last_t = 0, 0.0, 0.0
        self.all_done = env.event()
        self.waiters: dict[int, simpy.Event] = {}
        self.ts: list[tuple] = []
        self.replicas: list[Replica] = []
        # sessions (agent tasks): -1 = an independent request
        self.session = np.full(n, -1, np.int64)
        self.ctx_before = np.zeros(n, np.int64)  # context a call could find cached
        self.new = np.zeros(n, np.int64)  # tokens a call adds to it
        self.cache_after = np.zeros(n, bool)  # keep (or offload) its KV for the task's next call
        self.restored = np.zeros(n, bool)  # its prefix came back over the link (offload)
        self.kv_mode = "drop"  # keep | drop | offload: a task's KV during its tool calls
        self.pin_evictions = 0  # kept KV evicted to admit other work (the next call prefills it all)

    def _tick(self) -> None:
        now = self.env.now
        self.area += self.in_system * (now - self.last_t)
        self.last_t = now

    def arrive(self, rid: int) -> None:
        self._tick()
        self.arrival[rid] = self.env.now
        self.in_system += 1
        self.arrived += 1
        self.events += 1

    def done(self, rid: int) -> None:
        self._tick()
        self.in_system -= 1
        self.finished += 1
        w = self.waiters.pop(rid, None)
        if w is not None:
            w.succeed()
        if self.finished == self.n:
            self.all_done.succeed()

    def sample(self, t: float, replica: int, batch: int, queued: int, kv: float) -> None:
        if self.events > self.event_limit:
            raise Stalled(f"no progress after {self.events} events ({self.finished} of {self.n} requests "
                          f"finished at t={t:.6g} s)")
        self.ts.append((t, replica, batch, queued, kv))
        in_flight = sum(r.outstanding() for r in self.replicas)
        if self.arrived - self.finished != in_flight:
            raise InvariantError(f"t={t:.6g}: arrived {self.arrived} - finished {self.finished} "
                                 f"!= in flight {in_flight}")


def _route(replicas: list[Replica], how: str, rid: int) -> Replica:
    if how == "round_robin":
        return replicas[rid % len(replicas)]
    if how == "most_free_kv":
        return max(replicas, key=lambda r: (r.free_kv(), -r.index))
    return min(replicas, key=lambda r: (r.outstanding(), r.index))


def draw_lengths(spec: SimSpec, rng_p, rng_o) -> tuple[np.ndarray, np.ndarray]:
    if spec.trace is not None:
        n = min(spec.requests, len(spec.trace.arrival_s))
        return spec.trace.prompt_tokens[:n], spec.trace.output_tokens[:n]
    return spec.prompt.draw(rng_p, spec.requests), spec.output.draw(rng_o, spec.requests)


@dataclass
class SimResult:
    summary: dict
    requests: pd.DataFrame
    timeseries: pd.DataFrame
    tasks: TaskTimes | None = None


def simulate(spec: SimSpec, rounds) -> SimResult:
    """Simulate ``spec`` on replicas whose hardware is ``rounds`` (StepRounds or ConstantRounds)."""
    wall0 = time.perf_counter()
    r_arr, r_p, r_o = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3))
    plan = spec.plan
    if plan is not None:  # a call's KV covers its whole context; its prompt is set at admission
        prompts, outputs = plan.ctx_before + plan.new, plan.output
    else:
        prompts, outputs = draw_lengths(spec, r_p, r_o)
    env = simpy.Environment()
    rec = Recorder(env, prompts, outputs, rounds.kv_bytes((prompts + outputs).astype(float)), spec.chunk)
    if plan is not None:
        rec.session[:], rec.ctx_before[:], rec.new[:] = plan.session, plan.ctx_before, plan.new
        rec.cache_after[:] = plan.cache_after
        rec.kv_mode = spec.kv_between_turns
    reps = [Replica(env, i, rounds, rec, spec.policy, spec.max_batch, spec.chunk, spec.block_tokens)
            for i in range(spec.replicas)]
    rec.replicas = reps
    cap = reps[0].capacity
    worst = int(np.argmax(rec.kv_full))
    need = rec.kv_full[worst]
    if need > cap:
        raise ValueError(f"a request of {prompts[worst] + outputs[worst]} tokens needs {need:.3g} B of KV, "
                         f"more than a replica holds ({cap:.3g} B)")

    home: dict[int, Replica] = {}  # a task's calls go where its KV is

    def dispatch(rid: int) -> None:
        rec.arrive(rid)
        s = int(rec.session[rid])
        r = home.get(s) if s >= 0 else None
        if r is None:
            r = _route(reps, spec.router, rid)
            if s >= 0:
                home[s] = r
        rec.replica[rid] = r.index
        r.submit(rid)

    times = None
    if plan is not None:
        times = TaskTimes.empty(plan.tasks)
        _start_tasks(env, spec, plan, rec, home, dispatch, times, r_arr)
    elif spec.process == "closed":
        counter = iter(range(rec.n))

        def user():
            for rid in counter:
                ev = env.event()
                rec.waiters[rid] = ev
                dispatch(rid)
                yield ev
                if spec.think_s > 0:
                    yield env.timeout(spec.think_s)

        for _ in range(min(spec.users, rec.n)):
            env.process(user())
    else:
        if spec.trace is not None:
            times = spec.trace.arrival_s[:rec.n]
            gaps = np.diff(np.concatenate([[0.0], times]))
        else:
            gaps = interarrivals(spec.process, spec.rate_per_s, spec.cv, r_arr, rec.n)

        def source():
            for rid in range(rec.n):
                yield env.timeout(float(gaps[rid]))
                dispatch(rid)

        env.process(source())
    env.run(until=rec.all_done)
    rec._tick()
    wall = time.perf_counter() - wall0
    check_invariants(rec, reps)
    summary = summarise(rec, reps, spec, wall)
    if plan is not None:
        parts_from_calls(times, plan, rec.arrival, rec.admit, rec.first, rec.finish)
        check_tasks(times)
        summary.update(task_summary(times, plan), kv_evictions=rec.pin_evictions)
    return SimResult(summary, requests_frame(rec), timeseries_frame(rec), times)


def _start_tasks(env, spec: SimSpec, plan: CallPlan, rec: Recorder, home: dict, dispatch, times: TaskTimes,
                 rng) -> None:
    """Agents run tasks back to back (or tasks arrive as a Poisson process); a task makes its
    calls in order, each after the previous call's reply and tool call."""
    offload = spec.kv_between_turns == "offload"

    def task(s: int):
        times.start[s] = env.now
        i0, k = int(plan.first[s]), int(plan.count[s])
        for rid in range(i0, i0 + k):
            ev = env.event()
            rec.waiters[rid] = ev
            dispatch(rid)
            yield ev
            tool = float(plan.tool_after[rid])
            if tool <= 0:
                continue
            times.parts["tool"][s] += tool
            if offload and plan.cache_after[rid] and rid + 1 < i0 + k:
                r = home[s]
                t = r.offload_trip_s(rid)  # each way; out during the tool call, back after it
                r.xfer_busy += 2 * t
                yield env.timeout(max(tool, t) + t)
                times.parts["kv_transfer"][s] += max(t - tool, 0.0) + t
                rec.restored[rid + 1] = True
            else:
                yield env.timeout(tool)
        times.end[s] = env.now

    if spec.task_rate_per_s is not None:
        gaps = rng.exponential(1.0 / spec.task_rate_per_s, plan.tasks)

        def source():
            for s in range(plan.tasks):
                yield env.timeout(float(gaps[s]))
                env.process(task(s))
        env.process(source())
    else:
        counter = iter(range(plan.tasks))

        def agent():
            for s in counter:
                yield from task(s)
        for _ in range(min(spec.agents or 1, plan.tasks)):
            env.process(agent())


def check_invariants(rec: Recorder, reps: list[Replica]) -> None:
    if not (rec.arrived == rec.finished == rec.n and rec.in_system == 0):
        raise InvariantError(f"requests in {rec.arrived} != finished {rec.finished} (+{rec.in_system} in flight)")
    sojourn = float((rec.finish - rec.arrival).sum())
    if not math.isclose(rec.area, sojourn, rel_tol=1e-9, abs_tol=1e-9):
        raise InvariantError(f"Little's law: time-integral of requests in system {rec.area:.9g} != "
                             f"summed sojourn {sojourn:.9g}")
    a = reps[0].a
    short = rec.generated < rec.output
    over = rec.generated >= rec.output + max(1, math.ceil(a))
    if short.any() or over.any():
        i = int(np.argmax(short | over))
        raise InvariantError(f"request {i} generated {rec.generated[i]} tokens for {rec.output[i]} requested")
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


def _pct(x: np.ndarray, prefix: str, unit: str) -> dict:
    if len(x) == 0:
        return {f"{prefix}_{q}_{unit}": math.nan for q in ("p50", "p90", "p99", "max")}
    p = np.percentile(x, [50, 90, 99])
    return {f"{prefix}_p50_{unit}": p[0], f"{prefix}_p90_{unit}": p[1], f"{prefix}_p99_{unit}": p[2],
            f"{prefix}_max_{unit}": float(x.max())}


def summarise(rec: Recorder, reps: list[Replica], spec: SimSpec, wall: float) -> dict:
    n = rec.n
    m = np.arange(n) >= int(spec.warmup_fraction * n)  # ids are in arrival order
    ttft = rec.first[m] - rec.arrival[m]
    e2e = rec.finish[m] - rec.arrival[m]
    queue = rec.admit[m] - rec.arrival[m]
    multi = m & (rec.output > 1)
    tpot = (rec.finish[multi] - rec.first[multi]) / (rec.output[multi] - 1)
    speed = 1.0 / np.maximum(tpot, 1e-12)
    # the measured window runs from the first measured arrival to the last finish, less one mean
    # sojourn (the drain after the last arrival, which would bias short runs' rates low), and
    # never shorter than the arrivals' own span
    t0, t1 = float(rec.arrival[m].min()), float(rec.finish[m].max())
    arrivals_span, drained = float(rec.arrival[m].max()) - t0, t1 - t0 - float(e2e.mean())
    span = max(drained, arrivals_span) if arrivals_span > 0 else max(t1 - t0, 1e-12)
    makespan = max(float(rec.finish.max()), 1e-12)
    ok = np.ones(m.sum(), bool)
    slo = spec.slo
    if slo.ttft_p99_s is not None:
        ok &= ttft <= slo.ttft_p99_s
    if slo.tpot_p99_s is not None or slo.decode_tok_s_per_user_p50 is not None:
        tp = np.where(rec.output[m] > 1, (rec.finish[m] - rec.first[m]) / np.maximum(rec.output[m] - 1, 1), 0.0)
        if slo.tpot_p99_s is not None:
            ok &= tp <= slo.tpot_p99_s
        if slo.decode_tok_s_per_user_p50 is not None:
            ok &= (tp == 0) | (1.0 / np.maximum(tp, 1e-12) >= slo.decode_tok_s_per_user_p50)
    busy = np.mean([r.busy for r in reps], axis=0) / makespan
    kv_avg = np.mean([r.kv_area / makespan / r.m.kv_budget for r in reps])
    kv_peak = max(r.kv_peak / r.m.kv_budget for r in reps)
    out = {
        "sim_requests": n, "sim_measured_requests": int(m.sum()), "sim_time_s": makespan,
        "throughput_out_tok_s": float(rec.output[m].sum()) / span,
        "throughput_in_tok_s": float(rec.prompt[m].sum()) / span,
        "throughput_req_s": float(m.sum()) / span,
        **_pct(ttft, "ttft", "s"), **_pct(tpot, "tpot", "s"), **_pct(e2e, "e2e", "s"), **_pct(queue, "queue", "s"),
        "decode_tok_s_per_user_p10": float(np.percentile(speed, 10)) if len(speed) else math.nan,
        "decode_tok_s_per_user_p50": float(np.percentile(speed, 50)) if len(speed) else math.nan,
        "decode_tok_s_per_user_mean": float(speed.mean()) if len(speed) else math.nan,
        "mean_wait_s": float(queue.mean()), "mean_sojourn_s": float(e2e.mean()),
        "slo_attainment": float(ok.mean()) if len(ok) else math.nan,
        "goodput_req_s": float(ok.sum()) / span,
        "goodput_out_tok_s": float(rec.output[m][ok].sum()) / span,
        "stage_util_max": float(busy.max()), "stage_util_mean": float(busy.mean()),
        "kv_occupancy_avg": float(kv_avg), "kv_occupancy_peak": float(kv_peak),
        "link_util_max": float(np.mean([r.link_busy for r in reps]) / makespan),
        "offchip_transfer_util": float(np.mean([r.xfer_busy for r in reps]) / makespan),
        "preemptions": int(rec.preemptions.sum()), "swaps": int(rec.swaps.sum()),
        "events": rec.events, "events_per_request": rec.events / n,
        "wall_s": wall, "sim_requests_per_wall_s": n / max(wall, 1e-12),
        "mean_in_system": rec.area / makespan,
        # below 1: requests cleared slower than they arrived (an overloaded open queue)
        "served_to_offered": arrivals_span / drained if arrivals_span > 0 and drained > 0 else 1.0,
    }
    out["stage_utilisation"] = [float(x) for x in busy]
    # a stage holds its fixed share of every sequence's KV, so per-stage occupancy follows the replica's
    peak_bytes = max(r.kv_peak for r in reps)
    avg_bytes = float(np.mean([r.kv_area for r in reps])) / makespan
    out["stage_kv_occupancy_peak"] = [float(peak_bytes * s / b) if math.isfinite(b) else 0.0
                                      for s, b in zip(reps[0].m.share, reps[0].m.stage_budget)]
    out["stage_kv_occupancy_avg"] = [float(avg_bytes * s / b) if math.isfinite(b) else 0.0
                                     for s, b in zip(reps[0].m.share, reps[0].m.stage_budget)]
    return out


def requests_frame(rec: Recorder) -> pd.DataFrame:
    first_tok = rec.first - rec.arrival
    tpot = np.where(rec.output > 1, (rec.finish - rec.first) / np.maximum(rec.output - 1, 1), np.nan)
    return pd.DataFrame({
        "request": np.arange(rec.n), "replica": rec.replica, "arrival_s": rec.arrival, "admit_s": rec.admit,
        "first_token_s": rec.first, "finish_s": rec.finish, "prompt_tokens": rec.prompt,
        "output_tokens": rec.output, "queue_s": rec.admit - rec.arrival, "ttft_s": first_tok, "tpot_s": tpot,
        "e2e_s": rec.finish - rec.arrival, "preemptions": rec.preemptions, "swaps": rec.swaps})


def timeseries_frame(rec: Recorder) -> pd.DataFrame:
    return pd.DataFrame(rec.ts, columns=["t_s", "replica", "batch", "queued", "kv_bytes"])
