"""A prompt's prefill on an idle pipeline: its chunks, the time to first token (the chunks
flowing through the stages as a flow shop) and one chunk's cycle and pass. Part of the step
model (:class:`planner.physics.step.StepModel` inherits it); kept apart so each file stays
readable."""
from __future__ import annotations

import numpy as np

from planner.config.schema import PREFILL_CHUNK


class PrefillPasses:
    """Needs ``prefill``, ``hops``, ``S``, ``dev`` and a ``_passes`` memo from the step model."""

    def prefill_round(self, tokens: float, start: float = 0.0, seqs: float = 1.0) -> tuple[float, float]:
        """(cycle, pass) of one prefill chunk (``seqs`` prompts together) on an idle pipeline: the
        next chunk can enter after ``cycle`` (busiest stage), this one's output leaves after ``pass``."""
        t = self.prefill(tokens, start, seqs)
        hop_lat, _ = self.hops(tokens * seqs)
        cycle = float(np.maximum.reduce(t.occupancy_s))
        return cycle, self._trip(t, hop_lat) + self.dev.step_overhead_s

    @staticmethod
    def _trip(t, hop_lat: np.ndarray) -> float:
        """A piece of work's trip through every stage and the hops between them (seconds)."""
        return float(np.add.reduce(t.latency_s) + np.add.reduce(hop_lat))

    def _chunks(self, prompt: float, cached: float, chunk: int):
        """(StageTimes, hops(n)) of each chunk of a prompt after ``cached`` tokens (attending to those before)."""
        pos, end = cached, cached + prompt
        while pos < end:
            n = min(chunk, end - pos)
            yield self.prefill(n, pos), self.hops(n)
            pos += n

    def ttft_s(self, prompt: int, cached: int = 0, chunk: int = PREFILL_CHUNK) -> float:
        """Time to first token on an idle replica: chunked prefill flowing through the stages
        (a flow shop: a chunk enters a stage when the stage is free and the chunk has arrived)."""
        return self.prefill_pass(prompt, cached, chunk)[0]

    def prefill_pass(self, prompt: int, cached: int = 0, chunk: int = PREFILL_CHUNK) -> tuple[float, np.ndarray]:
        """(TTFT on an idle replica, each stage's active seconds in it) for one prompt; memoised
        (the batch does not enter it)."""
        key = (prompt, cached, chunk)
        hit = self._passes.get(key)
        if hit is not None:
            return hit
        free = np.zeros(self.S)
        active = np.zeros(self.S)
        done = 0.0
        for t, (hop_lat, _) in self._chunks(prompt, cached, chunk):
            # start_i = max(free_i, start_{i-1} + d_{i-1}) with d = latency + hop; with c_i the sum
            # of d before stage i: start = c + running max of (free - c), one numpy pass
            d = t.latency_s + np.append(hop_lat, 0.0)
            c = np.concatenate(([0.0], np.cumsum(d[:-1])))
            start = c + np.maximum.accumulate(free - c)
            free = start + t.occupancy_s
            done = float(start[-1] + t.latency_s[-1])
            active = active + t.active_s
        hit = self._passes[key] = (done + self.dev.step_overhead_s, active)
        return hit
