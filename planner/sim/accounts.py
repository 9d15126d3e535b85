"""What a replica records over time: each stage's busy seconds, the KV held (sampled at every
span start, integrated over spans, peak), and the time series the recorder keeps."""
from __future__ import annotations

import numpy as np

from planner.sim.errors import InvariantError


class Accounts:
    """Time-weighted metrics of a replica (sim/replica.py), sampled at span starts and ends."""

    @property
    def busy(self) -> np.ndarray:
        """Seconds each stage was busy (row 0) and active (row 1, power-weighted: rounds.stage_time)."""
        for vec, n in self._busy_n.values():
            self._busy = self._busy + n * vec
        self._busy_n.clear()
        return self._busy

    def _account(self, b: int) -> None:
        """Sample the state at the start of a span (time series + KV peak)."""
        now = self.env.now
        if self.watch is not None:
            self.watch.tick(now)
        kv = self.kv.held()
        if kv > self.kv_peak:
            self.kv_peak = kv
        if kv > self.capacity * (1 + 1e-9):
            raise InvariantError(f"replica {self.index}: KV {kv:.4g} B above capacity {self.capacity:.4g} B")
        self.rec.sample(now, self, b, len(self.queue) + len(self.prefilling) + len(self.swapped), kv)
        self.last_kv = kv

    def _advance_account(self, dt: float) -> None:
        kv_end = self.kv.held()
        self.kv_area += (self.last_kv + kv_end) / 2.0 * dt  # KV grows linearly within a span
        if kv_end > self.kv_peak:
            self.kv_peak = kv_end
        self.last_kv = kv_end
