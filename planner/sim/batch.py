"""The entries of a replica's batch, and the arithmetic of a decode span between events."""
from __future__ import annotations

from dataclasses import dataclass


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


def span_time(k: int, n: int, t0: float, t1: float) -> float:
    """Time of the first k rounds when round i takes t0 + (t1 - t0) i / (n - 1)."""
    if n <= 1:
        return k * t0
    return k * t0 + (t1 - t0) * k * (k - 1) / (2.0 * (n - 1))
