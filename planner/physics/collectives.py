"""A tensor-parallel all-reduce's time from measured figures (hardware spec
``scale_up.allreduce_measured``), between and beyond the sizes and group sizes measured.

* Between two measured message sizes: linear in log(time) against log(bytes), since the
  figures span seven decades and bend where the kernels switch (one-shot, two-shot, ring).
* Below the smallest size: that size's time (a latency floor); above the largest: that time
  scaled by the bytes (the link is saturated there).
* A group larger than any measured: the largest measured group's time x the ring's per-GPU
  traffic ratio, 2(n-1)/n over 2(m-1)/m (a labelled extrapolation: the time a ring adds per
  byte; the latency part is taken as the measured group's). A group smaller than any
  measured: the smallest measured group's time (an upper bound).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AllReduceCurve:
    log_bytes: tuple[float, ...]  # increasing
    groups: tuple[int, ...]  # GPUs per group, increasing
    log_seconds: tuple[tuple[float, ...], ...]  # per group, per size

    @classmethod
    def from_table(cls, message_bytes, latency_us: dict) -> AllReduceCurve:
        groups = tuple(sorted(latency_us))
        return cls(tuple(math.log(b) for b in message_bytes), groups,
                   tuple(tuple(math.log(t * 1e-6) for t in latency_us[n]) for n in groups))

    def seconds(self, gpus: int, message_bytes: float) -> float:
        """One all-reduce of ``message_bytes`` over ``gpus`` GPUs (0 for one GPU)."""
        if gpus <= 1 or message_bytes <= 0:
            return 0.0
        i = max(bisect.bisect_right(self.groups, gpus) - 1, 0)
        m = self.groups[i]
        scale = (gpus - 1) / gpus * m / (m - 1) if gpus > m else 1.0
        xs, ys = self.log_bytes, self.log_seconds[i]
        x = math.log(message_bytes)
        if x <= xs[0]:
            return scale * math.exp(ys[0])
        if x >= xs[-1]:
            return scale * math.exp(ys[-1] + x - xs[-1])
        j = bisect.bisect_right(xs, x)
        f = (x - xs[j - 1]) / (xs[j] - xs[j - 1])
        return scale * math.exp(ys[j - 1] + f * (ys[j] - ys[j - 1]))
