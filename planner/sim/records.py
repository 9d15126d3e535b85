"""What a simulation records (per-request arrays, counters, a sampled time series) and what
it reports: the run's :class:`Summary` and the per-request and time-series tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import simpy

from planner.sim.errors import InvariantError, Stalled
from planner.sim.sessions import TaskStats

# an open queue clearing requests slower than this share of their arrival rate is unstable:
# its backlog grows without bound, so a finite run's latencies understate it
STABLE = 0.95


class Recorder:
    """Per-request figures (indexed by request id, ids in arrival order) and run counters.

    While the run goes the per-request figures are Python lists (an item is read and written
    several times faster than a numpy scalar); ``close`` turns them into numpy arrays for the
    checks, the summary and the tables."""

    def __init__(self, env, prompts: np.ndarray, outputs: np.ndarray, kv_full: np.ndarray, chunk: int,
                 cached: np.ndarray | None = None):
        n = len(prompts)
        self.env, self.n = env, n
        # prompt: tokens to prefill; cached: tokens before them whose KV is already there (prefix caching)
        self.prompt, self.output = prompts.astype(np.int64).tolist(), outputs.astype(np.int64).tolist()
        self.cached = [0] * n if cached is None else cached.astype(np.int64).tolist()
        self.reprefill = 0  # tokens prefilled again after a preemption (prompt + generated)
        self.kv_full = [float(x) for x in kv_full]  # a request's own KV bytes at its whole context
        self.arrival, self.admit, self.first, self.finish = ([-1.0] * n for _ in range(4))
        self.generated, self.decode_rounds = [0] * n, [0] * n
        self.preemptions, self.swaps, self.replica = ([0] * n for _ in range(3))
        self.events = 0
        self.event_limit = event_budget(prompts, outputs, chunk)
        self.arrived = self.finished = 0
        self.in_system, self.area, self.last_t = 0, 0.0, 0.0
        # what the replicas hold (their queues, prompts, batches: not the counter above), observed
        # at every instant it can change (an arrival, a span start, a finish) and integrated
        self.held_area, self.held_t, self.held_n = 0.0, 0.0, 0
        self.ts_area = 0.0  # the time series' batch + queued, integrated per replica (span starts)
        self.all_done = env.event()
        self.waiters: dict[int, simpy.Event] = {}
        self.ts: list[tuple] = []
        self.replicas: list = []  # the Replica objects (for the in-flight check)
        # sessions (agent tasks): -1 = an independent request
        self.session = [-1] * n
        self.ctx_before = [0] * n  # context a call could find cached
        self.new = [0] * n  # tokens a call adds to it
        self.cache_after = [False] * n  # keep (or offload) its KV for the task's next call
        self.restored = [False] * n  # its prefix came back over the link (offload)
        self.kv_mode = "drop"  # keep | drop | offload: a task's KV during its tool calls
        self.pin_evictions = 0  # kept KV evicted to admit other work (the next call prefills it all)

    def close(self) -> None:
        """The per-request lists as numpy arrays (the run is over)."""
        for names, dtype in PER_REQUEST:
            for name in names:
                setattr(self, name, np.array(getattr(self, name), dtype))

    def _tick(self, now: float) -> None:
        self.area += self.in_system * (now - self.last_t)
        self.last_t = now

    def arrive(self, rid: int, now: float) -> None:
        self._tick(now)
        self.arrival[rid] = now
        self.in_system += 1
        self.arrived += 1
        self.events += 1

    def observe(self, now: float, rep=None) -> None:
        """Integrate the requests the replicas hold up to ``now``; then count them again from the
        queues and batch of ``rep``, whose count may have changed (None: of every replica). A
        replica's count changes only where it is observed (a submit, a finish; its span starts
        check it too), so the others' last counts stand."""
        self.held_area += self.held_n * (now - self.held_t)
        self.held_t = now
        if rep is None:
            for r in self.replicas:
                r.held = r.outstanding()
            self.held_n = sum(r.held for r in self.replicas)
        else:
            held = rep.outstanding()
            self.held_n += held - rep.held
            rep.held = held

    def done(self, rid: int, rep, now: float) -> None:
        """``rep`` has let go of request ``rid`` (finished at ``now``)."""
        self.finish[rid] = now
        self._tick(now)
        self.in_system -= 1
        self.finished += 1
        self.observe(now, rep)
        w = self.waiters.pop(rid, None)
        if w is not None:
            w.succeed()
        if self.finished == self.n:
            self.all_done.succeed()

    def sample(self, t: float, rep, batch: int, queued: int, kv: float) -> None:
        """A span starts on ``rep``: the time series, the checks that a run progresses (the
        event budget, no endless spans at one instant) and conservation (arrived = finished +
        held by the replicas)."""
        if self.events > self.event_limit:
            raise Stalled(f"no progress after {self.events} events ({self.finished} of {self.n} requests "
                          f"finished at t={t:.6g} s)")
        spans = rep.spans_now + 1 if t == rep.last_span_t else 0
        rep.last_span_t, rep.spans_now = t, spans
        if spans > STUCK_SPANS:  # spans that take no time, over and over: a livelock, not a slow run
            raise Stalled(f"no progress: replica {rep.index} started {spans} spans at t={t:.6g} s without time "
                          f"advancing ({self.finished} of {self.n} requests finished)")
        self.ts.append((t, rep.index, batch, queued, kv))
        self.ts_area += rep.ts_n * (t - rep.ts_t)
        rep.ts_t, rep.ts_n = t, batch + queued
        if rep.outstanding() != rep.held:  # (never, where every change is observed: the integral
            self.observe(t, rep)  # is the same split here or not)
        if self.arrived - self.finished != self.held_n:
            raise InvariantError(f"t={t:.6g}: arrived {self.arrived} - finished {self.finished} "
                                 f"!= in flight {self.held_n}")


# the per-request lists and their dtypes once the run is over (Recorder.close)
PER_REQUEST = ((("arrival", "admit", "first", "finish"), float),
               (("prompt", "output", "cached", "generated", "decode_rounds", "preemptions", "swaps", "replica",
                 "session", "ctx_before", "new"), np.int64),
               (("cache_after", "restored"), bool))


# a replica starts a few spans at one instant (a landing, an admission, a round); thousands
# without time advancing is a livelock
STUCK_SPANS = 10_000


def event_budget(prompts: np.ndarray, outputs: np.ndarray, chunk: int) -> int:
    """Events far above what the run's work needs, so a slow run that progresses finishes and
    a runaway one stops. An event advances at least one round (or is an arrival, admission or
    landing, a few per request); a prompt needs at most prompt / min(chunk, 64) + 1 prefill
    rounds (a round takes a chunk, or at least 64 tokens of bubbles on a wafer) and its reply at
    most one round per token; x8 for preemption's recomputes and interrupted spans."""
    step = max(1, min(int(chunk), 64))
    prefill = int(np.sum(-(-prompts.astype(np.int64) // step) + 1))
    return 100_000 + 200 * len(prompts) + 8 * (prefill + int(np.sum(outputs)))


def _internal():
    """A summary field kept out of the results table (lists, wall-clock and bookkeeping figures:
    the table must not depend on the machine)."""
    return field(default=None, metadata={"row": False})


@dataclass(frozen=True)
class Summary:
    """One simulated run's figures over its measured requests (SI units, unit in the name)."""

    sim_requests: int
    sim_time_s: float
    throughput_out_tok_s: float
    throughput_in_tok_s: float  # fresh (prefilled) input
    throughput_cached_in_tok_s: float  # input served from a cached prefix (not prefilled)
    throughput_req_s: float
    served_to_offered: float  # requests/s served over requests/s offered (below 1: overloaded)
    stable: bool  # False: an open queue clearing requests under STABLE x their arrival rate
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    ttft_max_s: float
    tpot_p50_s: float
    tpot_p90_s: float
    tpot_p99_s: float
    tpot_max_s: float
    e2e_p50_s: float
    e2e_p90_s: float
    e2e_p99_s: float
    e2e_max_s: float
    queue_p50_s: float
    queue_p90_s: float
    queue_p99_s: float
    queue_max_s: float
    decode_tok_s_per_user_p10: float
    decode_tok_s_per_user_p50: float
    decode_tok_s_per_user_mean: float
    slo_attainment: float
    goodput_req_s: float
    goodput_out_tok_s: float
    stage_util_max: float
    stage_util_mean: float
    kv_occupancy_avg: float
    kv_occupancy_peak: float
    link_util_max: float
    offchip_transfer_util: float
    preemptions: int
    swaps: int
    events_per_request: float
    sim_measured_requests: int = _internal()
    mean_wait_s: float = _internal()
    mean_sojourn_s: float = _internal()
    mean_in_system: float = _internal()
    events: int = _internal()
    prefill_tokens: int = _internal()  # prompt tokens the replicas prefilled (recomputes included)
    wall_s: float = _internal()
    sim_requests_per_wall_s: float = _internal()
    stage_utilisation: tuple = _internal()
    stage_activity: tuple = _internal()  # per stage: power-weighted active share of simulated time
    stage_kv_occupancy_peak: tuple = _internal()
    stage_kv_occupancy_avg: tuple = _internal()
    # KV policies that run sequences beyond SRAM (offload, swap, preempt): tokens after the first
    # over seconds from first to last token, summed over measured requests (a slow request counts
    # for as long as it lasts; per-request percentiles see a stalled minority as a few requests)
    decode_tok_s_per_user_time_avg: float | None = None
    tasks: TaskStats | None = None  # agent tasks: task times and their breakdown
    kv_evictions: int | None = None  # agent tasks: kept KV evicted to admit other work
    # disaggregated prefill and decode (sim/disagg.py): prompt KV transfer (start to last byte)
    # and handoff gap (first token to joining a decode batch) of measured requests of more than
    # one token, the decode NICs' busy share for it, the prefill pool's busiest stage
    kv_transfer_p50_s: float | None = None
    kv_transfer_p99_s: float | None = None
    handoff_p50_s: float | None = None
    handoff_p99_s: float | None = None
    kv_ingress_util: float | None = None
    prefill_util_max: float | None = None

    def get(self, name: str, default=None):
        """A figure by name; None and NaN count as absent (not measured: e.g. per-user speed
        and TPOT when every reply is one token, which no speed target can miss)."""
        v = getattr(self, name, None)
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def as_dict(self) -> dict:
        """Every figure, task figures inlined (what ``plan run`` writes to summary.json)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tasks"
               and getattr(self, f.name) is not None}
        out.update(self.tasks.as_dict() if self.tasks else {})
        return out

    def columns(self) -> dict:
        """The figures that belong in a results table."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("row", True)
               and f.name != "tasks" and getattr(self, f.name) is not None}
        out.update(self.tasks.as_dict() if self.tasks else {})
        return out


def _pct(x: np.ndarray, prefix: str, unit: str) -> dict:
    if len(x) == 0:
        return {f"{prefix}_{q}_{unit}": math.nan for q in ("p50", "p90", "p99", "max")}
    p = np.percentile(x, [50, 90, 99])
    return {f"{prefix}_p50_{unit}": p[0], f"{prefix}_p90_{unit}": p[1], f"{prefix}_p99_{unit}": p[2],
            f"{prefix}_max_{unit}": float(x.max())}


def summarise(rec: Recorder, reps: list, spec, wall: float) -> Summary:
    n = rec.n
    m = np.arange(n) >= int(spec.warmup_fraction * n)  # ids are in arrival order
    ttft = rec.first[m] - rec.arrival[m]
    e2e = rec.finish[m] - rec.arrival[m]
    queue = rec.admit[m] - rec.arrival[m]
    multi = m & (rec.output > 1)
    per_token = tpot_of(rec, 0.0)
    tpot = per_token[multi]
    speed = 1.0 / np.maximum(tpot, 1e-12)
    span, counted, offered = served_window(rec, m)
    if spec.process == "closed" and spec.plan is None:
        # N users who each wait for their reply (and think) cycle at X = N / (R + Z), the response
        # time law: from the measured requests' mean sojourn R it holds within ~1% after one
        # round of users, where counting completions in a window reads 2-20% high (the users
        # finish in waves; the window spans one wave more than its periods)
        req_s = min(spec.users, n) / (float(e2e.mean()) + spec.think_s)
        out_tok_s, in_tok_s = req_s * float(rec.output[m].mean()), req_s * float(rec.prompt[m].mean())
        cached_s = req_s * float(rec.cached[m].mean())
    else:
        req_s = float(counted.sum()) / span
        out_tok_s, in_tok_s = float(rec.output[counted].sum()) / span, float(rec.prompt[counted].sum()) / span
        cached_s = float(rec.cached[counted].sum()) / span
    stable = closed_loop(spec) or offered * STABLE <= req_s
    makespan = max(float(rec.finish.max()), 1e-12)
    # per measured request, the figure each SLO target bounds (a 1-token reply has no TPOT: it passes)
    tp = per_token[m]
    each = {"ttft_p99_s": (ttft, False), "tpot_p99_s": (tp, tp == 0),
            "decode_tok_s_per_user_p50": (1.0 / np.maximum(tp, 1e-12), tp == 0)}
    ok = np.ones(m.sum(), bool)
    for name, target, sense, _ in spec.slo.targets():
        value, exempt = each[name]
        ok &= exempt | (sense * value <= sense * target)
    busy, active = np.mean([r.busy for r in reps], axis=0) / makespan
    kv_avg = np.mean([r.kv_area / makespan / r.m.kv_budget for r in reps])
    kv_peak = max(r.kv_peak / r.m.kv_budget for r in reps)
    out = {
        "sim_requests": n, "sim_measured_requests": int(m.sum()), "sim_time_s": makespan,
        "throughput_out_tok_s": out_tok_s, "throughput_in_tok_s": in_tok_s, "throughput_cached_in_tok_s": cached_s,
        "throughput_req_s": req_s,
        # below 1: requests cleared slower than they arrived (an overloaded open queue, unstable)
        "served_to_offered": req_s / offered if offered > 0 else 1.0,
        "stable": bool(stable),
        **_pct(ttft, "ttft", "s"), **_pct(tpot, "tpot", "s"), **_pct(e2e, "e2e", "s"), **_pct(queue, "queue", "s"),
        "decode_tok_s_per_user_p10": float(np.percentile(speed, 10)) if len(speed) else math.nan,
        "decode_tok_s_per_user_p50": float(np.percentile(speed, 50)) if len(speed) else math.nan,
        "decode_tok_s_per_user_mean": float(speed.mean()) if len(speed) else math.nan,
        "decode_tok_s_per_user_time_avg": None if spec.policy == "wait" else
        float((rec.output[multi] - 1).sum() / max((rec.finish - rec.first)[multi].sum(), 1e-12)) if multi.any()
        else math.nan,
        "mean_wait_s": float(queue.mean()), "mean_sojourn_s": float(e2e.mean()),
        "slo_attainment": float(ok.mean()) if len(ok) else math.nan,
        "goodput_req_s": req_s * (float(ok.mean()) if len(ok) else 0.0),
        "goodput_out_tok_s": out_tok_s * float(rec.output[m][ok].sum()) / max(float(rec.output[m].sum()), 1.0),
        "stage_util_max": float(busy.max()), "stage_util_mean": float(busy.mean()),
        "kv_occupancy_avg": float(kv_avg), "kv_occupancy_peak": float(kv_peak),
        "link_util_max": float(np.mean([r.link_busy for r in reps]) / makespan),
        "offchip_transfer_util": float(np.mean([r.xfer_bytes / r.m.link_bytes_per_s for r in reps]) / makespan),
        "preemptions": int(rec.preemptions.sum()), "swaps": int(rec.swaps.sum()),
        "events": rec.events, "events_per_request": rec.events / n,
        "prefill_tokens": int(sum(r.prefilled for r in reps)),
        "wall_s": wall, "sim_requests_per_wall_s": n / max(wall, 1e-12),
        "mean_in_system": rec.area / makespan,
    }
    out["stage_utilisation"] = tuple(float(x) for x in busy)
    out["stage_activity"] = tuple(float(x) for x in active)
    # a stage holds its fixed share of every sequence's KV, so per-stage occupancy follows the replica's
    peak_bytes = max(r.kv_peak for r in reps)
    avg_bytes = float(np.mean([r.kv_area for r in reps])) / makespan
    out["stage_kv_occupancy_peak"] = tuple(float(peak_bytes * s / b) if math.isfinite(b) else 0.0
                                           for s, b in zip(reps[0].m.share, reps[0].m.stage_budget))
    out["stage_kv_occupancy_avg"] = tuple(float(avg_bytes * s / b) if math.isfinite(b) else 0.0
                                          for s, b in zip(reps[0].m.share, reps[0].m.stage_budget))
    return Summary(**out)


def served_window(rec: Recorder, m: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(span, requests counted, offered requests/s): the measured window of completions.

    Throughput (open arrivals and agent tasks; a closed loop of requests has the response time
    law, see summarise) is work served over that window: the requests finishing after the first
    measured finish and by the last, over the time between the two (K completions, K gaps).
    Overloaded, the replicas clear requests at their saturation rate whatever arrives, so this
    is that rate; below it completions follow arrivals and it is the offered rate. (Dividing
    by the arrivals' span less a mean sojourn, as before, shrank the window by the queueing
    time in overload and reported up to twice what was served.) Offered: the measured
    arrivals' rate (infinite when they all arrive at once)."""
    fin = rec.finish[m]
    arr = rec.arrival[m]
    fa, fb = float(fin.min()), float(fin.max())
    if fb > fa:
        span, counted = fb - fa, (rec.finish > fa) & (rec.finish <= fb)
    else:  # every measured request finished at one instant: from their first arrival
        span, counted = max(fb - float(arr.min()), 1e-12), m
    gaps = float(arr.max() - arr.min())
    offered = (len(arr) - 1) / gaps if gaps > 0 else (math.inf if len(arr) > 1 else 0.0)
    return span, counted, offered


def closed_loop(spec) -> bool:
    """Users (or agents) wait for their replies: the queue cannot grow without bound."""
    return spec.process == "closed" if spec.plan is None else spec.task_rate_per_s is None


def tpot_of(rec: Recorder, single: float) -> np.ndarray:
    """Per request: seconds per output token after the first (``single`` for 1-token replies)."""
    return np.where(rec.output > 1, (rec.finish - rec.first) / np.maximum(rec.output - 1, 1), single)


def requests_frame(rec: Recorder) -> pd.DataFrame:
    first_tok = rec.first - rec.arrival
    tpot = tpot_of(rec, np.nan)
    return pd.DataFrame({
        "request": np.arange(rec.n), "replica": rec.replica, "arrival_s": rec.arrival, "admit_s": rec.admit,
        "first_token_s": rec.first, "finish_s": rec.finish, "prompt_tokens": rec.prompt, "cached_tokens": rec.cached,
        "output_tokens": rec.output, "queue_s": rec.admit - rec.arrival, "ttft_s": first_tok, "tpot_s": tpot,
        "e2e_s": rec.finish - rec.arrival, "preemptions": rec.preemptions, "swaps": rec.swaps})


def timeseries_frame(rows: list[tuple]) -> pd.DataFrame:
    """The recorder's time-series rows (``Recorder.ts``) as a table."""
    return pd.DataFrame(rows, columns=["t_s", "replica", "batch", "queued", "kv_bytes"])
