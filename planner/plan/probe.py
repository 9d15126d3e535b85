"""One capacity probe made cheap: as many requests as its SLO percentiles need, stopped as soon
as its verdict is a miss for sure, and a first load that counts prefill queueing.

* ``measured_needed``: a p-th percentile is read from at least ``TAIL / (1 - p/100)`` measured
  requests (and ``TAIL / (p/100)`` for a low one), so ``TAIL`` requests lie beyond it: p99 needs
  1,000, p50 20 (at least ``MIN_MEASURED``). ``shorten`` cuts a probe to that many after its
  warm-up (closed loops: at least one round of their users), unless the scenario sets
  ``workload.requests``; never longer than it was.
* ``Watch`` (installed with ``planner.sim.replica.watching``) ends a run by raising ``Settled``
  once enough measured requests already miss a target that the full run's percentile must miss
  it, whatever the other requests do: no estimate, the count is exact (below).
* ``prefill_guess``: the load at which prefill, served one prompt after another at the budget
  the running batch leaves, queues to the TTFT target (an M/D/1 queue's exponential tail).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from planner.config.schema import SLO
from planner.sim.watch import Settled

TAIL, MIN_MEASURED = 10, 200
PERCENTILE = {"ttft_p99_s": 99.0, "tpot_p99_s": 99.0, "decode_tok_s_per_user_p50": 50.0}


def measured_needed(slo: SLO) -> int:
    """Measured requests the SLO's percentiles need (``TAIL`` of them beyond each percentile)."""
    need = MIN_MEASURED
    for name, *_ in slo.targets():
        p = PERCENTILE[name] / 100
        need = max(need, math.ceil(TAIL / min(p, 1 - p) - 1e-9))
    return need


def shorten(spec, slo: SLO, users: int | None):
    """``spec`` cut to its warm-up (the first ``users`` of a closed loop, else the warm-up
    fraction) and then ``measured_needed`` requests, if that is fewer than it had. A closed
    loop keeps at least one round of its users after the warm-up (every user measured once;
    its throughput, by the response time law, is then within ~1% of a long run's); an open run
    given a population (the requests in flight of a disaggregated sizing) keeps two, its
    throughput being completions counted over a window. Agent tasks keep their plan; a scenario
    that sets ``workload.requests`` is not cut (the caller passes the spec unchanged)."""
    if spec.plan is not None:
        return spec
    need, wf, u = measured_needed(slo), spec.warmup_fraction, users or 0
    rounds = 1 if spec.process == "closed" else 2
    n = max(math.ceil(need / (1 - wf)) + 1, u + max(need, rounds * u))
    if n >= spec.requests:
        return spec
    return dataclasses.replace(spec, requests=n, warmup_fraction=max(wf, u / n))


class Watch:
    """Raises ``Settled`` out of the run once a target is missed for sure.

    With N measured requests planned and h = (N - 1) p / 100 (numpy's linear interpolation),
    the p-th percentile lies between the floor(h)-th and ceil(h)-th smallest values, so it is
    above an upper target once N - floor(h) values are above it, and below a lower target
    once ceil(h) + 1 values are below it. A measured request counts as soon as its figure is
    known: its first token (or, still waiting, once it has waited longer than the TTFT
    target), its last token (TPOT and speed over the requests of more than one token)."""

    def __init__(self, slo: SLO, warmup_fraction: float):
        self.slo, self.wf = slo, warmup_fraction
        self.rec = None
        self.need: dict[str, int] = {}
        self.bad: dict[str, int] = {}

    def attach(self, rec) -> None:
        """Bind to the run's records (a replica does it when it starts)."""
        if self.rec is rec:
            return
        self.rec, n = rec, rec.n
        self.m0 = int(self.wf * n)  # as the summary: ids are in arrival order, these are measured
        self.ptr = self.m0  # requests before it that still wait for a first token are counted
        multi = int((np.asarray(rec.output[self.m0:]) > 1).sum())
        for name, target, sense, _ in self.slo.targets():
            count = n - self.m0 if name == "ttft_p99_s" else multi
            h = (count - 1) * PERCENTILE[name] / 100
            # a hair conservative where h is a whole number up to rounding
            self.need[name] = count - math.floor(h - 1e-6) if sense > 0 else math.ceil(h + 1e-6) + 1
            self.bad[name] = 0
        self.ttft = self.slo.ttft_p99_s if "ttft_p99_s" in self.need else None
        self.tpot = self.slo.tpot_p99_s if "tpot_p99_s" in self.need else None
        self.speed = self.slo.decode_tok_s_per_user_p50 if "decode_tok_s_per_user_p50" in self.need else None

    def _check(self, name: str) -> None:
        self.bad[name] += 1
        if self.bad[name] >= self.need[name]:
            raise Settled([n for n in self.need if self.bad[n] >= self.need[n]], self.estimates())

    def first(self, rid: int, t: float) -> None:
        """Request ``rid``'s first token is out at ``t``."""
        if self.ttft is not None and rid >= self.ptr and t - self.rec.arrival[rid] > self.ttft:
            self._check("ttft_p99_s")

    def finished(self, rid: int) -> None:
        rec = self.rec
        if rid < self.m0 or rec.output[rid] <= 1 or (self.tpot is None and self.speed is None):
            return
        tp = (rec.finish[rid] - rec.first[rid]) / max(rec.output[rid] - 1, 1)  # as the summary
        if self.tpot is not None and tp > self.tpot:
            self._check("tpot_p99_s")
        if self.speed is not None and 1.0 / max(tp, 1e-12) < self.speed:
            self._check("decode_tok_s_per_user_p50")

    def tick(self, now: float) -> None:
        """Measured requests that have waited longer than the TTFT target without a first token
        miss it whatever happens next (arrivals are in id order)."""
        if self.ttft is None:
            return
        rec, n = self.rec, self.rec.n
        while self.ptr < n:
            a = rec.arrival[self.ptr]
            if a < 0 or not now - a > self.ttft:
                break
            self.ptr += 1
            if rec.first[self.ptr - 1] < 0:
                self._check("ttft_p99_s")

    def estimates(self) -> dict[str, float]:
        """Rough figures for a run stopped early (the search steps by them; the verdict does not
        depend on them): TTFT as the wait of the requests queued ahead at the rate first tokens
        came out so far, at least the worst seen; TPOT and speed over the measured requests
        finished so far."""
        rec, out = self.rec, {}
        now = rec.env.now
        arrival, first, finish, output = (np.asarray(x) for x in (rec.arrival, rec.first, rec.finish, rec.output))
        arrived = arrival >= 0
        landed = first >= 0
        m = np.arange(rec.n) >= self.m0
        if self.ttft is not None:
            seen = np.where(landed, first, now) - arrival
            worst = float(seen[m & arrived].max()) if (m & arrived).any() else 0.0
            rate = landed.sum() / now if now > 0 else 0.0
            queued = float((arrived & ~landed).sum() / rate) if rate > 0 else worst
            out["ttft_p99_s"] = max(worst, queued)
        later = np.sort(first[landed])[int(landed.sum()) // 2:]  # the later half: past the start-up
        if len(later) > 1 and later[-1] > later[0]:  # prompts prefilled per second (saturated: the most)
            out["first_token_rate"] = (len(later) - 1) / float(later[-1] - later[0])
        finished = finish >= 0
        if finished.any():
            out["decode_s"] = float(np.median(finish[finished] - first[finished]))
        done = m & finished & (output > 1)
        if done.any():
            tp = (finish[done] - first[done]) / (output[done] - 1)
            out["tpot_p99_s"] = float(np.percentile(tp, 99))
            out["decode_tok_s_per_user_p50"] = float(np.percentile(1.0 / np.maximum(tp, 1e-12), 50))
        return out


@dataclasses.dataclass
class Stopped:
    """A probe ended early by its Watch: the targets it missed for sure and rough figures."""

    spec: object  # the SimSpec, to run it in full if it must be reported
    figures: dict
    served_to_offered: float = 1.0

    @property
    def summary(self):
        return self

    def get(self, name: str, default=None):
        return self.figures.get(name, default)


def md1_p99_wait(rho: float, s: float) -> float:
    """99th percentile wait of an M/D/1 queue at utilisation ``rho`` (service ``s`` seconds), by
    its heavy-traffic exponential tail: ln(100 rho) rho s / (2 (1 - rho)); 0 at rho <= 1%."""
    return math.log(max(100 * rho, 1.0)) * rho * s / (2 * (1 - rho)) if rho < 1 else math.inf


def prompt_seconds(rounds, b: int, ctx: float, prompt: int, chunk: int,
                   cached: int = 0) -> tuple[float, float, float]:
    """(seconds of prefill rounds one prompt takes when prompts follow each other, one such
    round's seconds, its chunk's pass): fresh / budget rounds at the budget a batch of ``b``
    at context ``ctx`` leaves, at the fresh part's middle position (fresh = prompt less its
    ``cached`` prefix, which it attends to)."""
    budget = max(rounds.prefill_budget(b, ctx, chunk), 1)
    fresh = prompt - cached
    t_mix, _, _, passing, _ = rounds.mixed(b, ctx, budget, cached + fresh // 2, chunk)
    return fresh / budget * t_mix, t_mix, passing


def prefill_guess(rounds, slo: SLO, prompt: int, output: int, chunk: int, think_s: float, max_batch: int,
                  closed: bool, cached: int = 0) -> float | None:
    """Load (closed: users; open: requests/s) at which prefill queues to the TTFT target (None:
    no target, or out of reach unloaded by this estimate). Prompts are prefilled one after
    another at the budget the running batch leaves: ``s = fresh / budget rate`` each (fresh = prompt
    less its ``cached`` prefix, attending to it from its midpoint), at most
    1/s requests/s. A closed loop at that rate is saturated and regular (the population sets the
    queue): each cycle is TTFT + decode + think, so N = (TTFT target + decode + think) / s.
    An open (Poisson) queue keeps its p99 wait ``ln(100 rho) rho s / (2 (1 - rho))`` (M/D/1,
    heavy-traffic exponential tail) within what the prompt's own prefill leaves of the target.
    The decode batch the load brings (rate x decode time) sets the budget: a few fixed-point steps."""
    target = slo.ttft_p99_s
    if target is None:
        return None
    b, lam, decode_s = max(1, max_batch), 0.0, 0.0
    for _ in range(6):
        ctx = prompt + output / 2
        t_dec = rounds.decode(b, ctx)[0]
        s, t_mix, passing = prompt_seconds(rounds, b, ctx, prompt, chunk, cached)
        if s + passing >= target:
            return None
        rho = 1.0
        if not closed:
            lo, hi = 1e-6, 1 - 1e-9
            for _ in range(50):
                rho = (lo + hi) / 2
                lo, hi = (rho, hi) if md1_p99_wait(rho, s) + s + passing <= target else (lo, rho)
            rho = lo
        lam = rho / s
        decode_s = output / rounds.accepted * (rho * t_mix + (1 - rho) * t_dec)
        b = max(1, min(max_batch, round(0.5 * b + 0.5 * lam * decode_s)))
    return lam * (target + decode_s + think_s) if closed else lam
