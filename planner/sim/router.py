"""Routing without a scan per request: ``least_outstanding`` keeps the replicas in a heap by
requests outstanding (lowest index on a tie), so a route costs O(log R), not O(R)."""
from __future__ import annotations

import heapq


class Pool:
    """The replicas of a run by requests outstanding. A replica reports each change of its count
    (``changed``); entries left stale by later changes are dropped as they surface, and the heap
    is rebuilt when they pile up."""

    def __init__(self, replicas: list):
        self.reps = replicas
        self.base = replicas[0].index  # a pool's replicas are numbered base, base + 1, ... (sim/disagg.py)
        self._rebuild()
        for r in replicas:
            r.pool = self

    def _rebuild(self) -> None:
        self.heap = [(r.n_out, r.index) for r in self.reps]
        heapq.heapify(self.heap)

    def changed(self, r) -> None:
        heapq.heappush(self.heap, (r.n_out, r.index))
        if len(self.heap) > 4 * len(self.reps) + 64:
            self._rebuild()

    def least(self):
        """The replica with the fewest requests outstanding (the lowest index among them): the
        same choice as min over (outstanding, index)."""
        heap, reps, base = self.heap, self.reps, self.base
        while heap[0][0] != reps[heap[0][1] - base].n_out:
            heapq.heappop(heap)
        return reps[heap[0][1] - base]
