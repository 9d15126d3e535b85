"""The entries of a replica's batch, the arithmetic of a span between events, and the tally of
the stage-busy vectors its rounds ran (``count``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def count(busy: dict, vec: np.ndarray, rounds: float) -> None:
    """``rounds`` more rounds of the memoised stage-busy ``vec`` (summed once, when read)."""
    hit = busy.get(id(vec))
    if hit is None:
        busy[id(vec)] = [vec, rounds]
    else:
        hit[1] += rounds


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum of floor((a j + b) / m) over j = 0 .. n-1 (integers, a, b >= 0, m > 0), in O(log)."""
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            return total
        n, b, m, a = top // m, top % m, a, m


def largest(lo: int, hi: int, ok) -> int:
    """Largest k in [lo, hi] with ok(k), for ok true at lo and monotone (true, then false)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(slots=True)
class Seq:
    rid: int
    c0: float  # context when the sequence joined the running batch
    r0: int  # round index when it joined
    fin: int  # round index at which its last token is out
    reserved: float  # KV bytes reserved (wait/offload policies)


@dataclass(slots=True)
class Prefill:
    rid: int
    pos: int  # tokens already prefilled
    total: int  # tokens to prefill (prompt, or prompt + generated for a recompute)
    reserved: float
    cached: int = 0  # tokens whose KV was here already (pos at admission)
    entered: float = -1.0  # when its first piece went in (-1: not yet)

    def enter(self, now: float) -> None:
        if self.entered < 0:
            self.entered = now


def span_time(k: int, n: int, t0: float, t1: float) -> float:
    """Time of the first k rounds when round i takes t0 + (t1 - t0) i / (n - 1)."""
    if n <= 1:
        return k * t0
    return k * t0 + (t1 - t0) * k * (k - 1) / (2.0 * (n - 1))


def rounds_within(elapsed: float, n: int, t0: float, t1: float) -> int:
    """Largest k in [0, n] with span_time(k, n, t0, t1) <= elapsed (round times > 0, so span_time
    grows with k): the root of the quadratic, then checked against span_time itself (the same k
    as a search over span_time would find, without one)."""
    c = (t1 - t0) / (2.0 * (n - 1)) if n > 1 else 0.0  # span_time(k) = c k^2 + (t0 - c) k
    if c == 0.0:
        est = elapsed / t0
    else:
        disc = (t0 - c) ** 2 + 4.0 * c * elapsed
        est = (math.sqrt(disc) - (t0 - c)) / (2.0 * c) if disc > 0 else n
    k = min(n, max(0, int(est)))
    while k < n and span_time(k + 1, n, t0, t1) <= elapsed:
        k += 1
    while k > 0 and span_time(k, n, t0, t1) > elapsed:
        k -= 1
    return k


def next_bucket(s0: float, ab: float, b: int, r: int, q: float) -> int:
    """First round index after ``r`` whose mean context ``(s0 + ab R) / b`` falls in a later
    bucket of width ``q`` than round ``r``'s (the memo grid's context bucket; ab > 0)."""
    k = int((s0 + ab * r) / b / q)
    est = max(r + 1, math.ceil(((k + 1) * q * b - s0) / ab))  # solved in closed form, then checked
    while est > r + 1 and int((s0 + ab * (est - 1)) / b / q) != k:
        est -= 1
    while int((s0 + ab * est) / b / q) == k:
        est += 1
    return est


def head_rounds(m, b: int, s0: float, ab: float, r0: int, hp: int, htotal: int, limit: int, chunk: int,
                busy: dict, exact: bool = False, first: tuple | None = None):
    """Rounds (at most ``limit``) of a prefill span in which the head prompt takes the whole
    budget and does not finish: (rounds, head position after, seconds, link busy, and the next
    round's mean context and budget, or None past ``limit``); their stage-busy vectors are
    counted in ``busy`` (batch.count). ``first``: round r0's (context, budget), if known.

    Such rounds come in segments of fixed batch, context bucket and budget, whose round count
    is closed form; within one the memo key changes only with the head's position bucket
    (``m.mixed_run``). ``exact``: every round looked up and summed one by one (the reference)."""
    j, total, link = 0, 0.0, 0.0
    ctx, budget = first or (None, None)
    while j < limit:
        r = r0 + j
        if budget is None:
            ctx = (s0 + ab * r) / b if b else 0.0
            budget = m.prefill_budget(b, ctx, chunk)
        if budget <= 0:
            break
        k = min((htotal - hp - 1) // budget, limit - j)  # full-budget rounds left for the head
        if k <= 0:
            break
        if b and ab > 0 and m.q < math.inf:  # the context bucket (and with it the budget) changes
            k = min(k, next_bucket(s0, ab, b, r, m.q) - r)
        if exact:
            for i in range(k):
                t, bz, ln, _, _ = m.mixed(b, ctx, budget, hp + i * budget, chunk)
                total += t
                count(busy, bz, 1)
                link += ln
        else:
            t, ln = m.mixed_run(b, ctx, budget, hp, k, chunk, busy)
            total += t
            link += ln
        hp += k * budget
        j += k
        ctx = budget = None
    return j, hp, total, link, ctx, budget
