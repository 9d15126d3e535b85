"""The steady state an estimate reads: a decode round with the other sequences' prefills
interleaved (a user's speed) and the replica's time per round with every replacement prefilled
(its throughput). Part of the step model (:class:`planner.physics.step.StepModel` inherits
it); kept apart so each file stays readable."""
from __future__ import annotations

from dataclasses import replace

from planner.config.schema import PREFILL_CHUNK
from planner.physics.times import Round


class SteadyRounds:
    """Needs ``decode_round``, ``prefill_pass``, ``_chunks``, ``wafer`` and a ``_per_prompt``
    memo from the step model."""

    def steady_round(self, batch: int, context: float, prompt: int, output: int,
                     chunk: int = PREFILL_CHUNK, cached: int = 0) -> tuple[Round, Round, float]:
        """(pure decode round, round with the other sequences' prefills interleaved, seconds per
        round with every replacement prefilled): the second sets the per-user speed, the third
        the replica's throughput.

        In steady state each round finishes batch*accepted/output sequences whose
        replacements need prefilling; a sequence's own prefill is in its TTFT, so the
        others' share is (batch-1)*accepted*fresh/output prompt tokens per round, where
        fresh = prompt - cached: a cached prefix (prefix caching) is not prefilled, but the
        fresh tokens attend to it (their prefill starts at position ``cached``).
        Wafers fill their pipeline bubbles with it. GPUs pay it as whole ``chunk``-token
        prefill passes amortised over the rounds between them (each pass reads the weights,
        touches the experts and pays the per-layer fixed time once), not as thin slices fused
        into every round, which would make every round touch the experts of the prompt; a pass
        costs a pipeline its busiest stage's (or link's) time, the other stages serving other work.
        The replica itself does all batch*accepted/output prefills per round: with others
        decoding meanwhile (batch >= 2) each at the others' cost; a lone sequence (batch 1)
        waits for its own, an idle prefill (TTFT) per output/accepted rounds."""
        r = self.decode_round(batch, context)
        fresh = prompt - cached
        q = r.accepted_tokens / output  # sequences a round finishes, per sequence in the batch
        if fresh <= 0:
            return r, r, r.round_s
        if batch <= 1:
            return r, r, r.round_s + q * self.prefill_pass(fresh, cached, chunk)[0]  # (estimate's own key)
        tokens, everyone = (batch - 1) * q * fresh, batch * q * fresh
        if self.wafer:
            return (r, self.decode_round(batch, context, tokens, fresh, cached),
                    self.decode_round(batch, context, everyone, fresh, cached, attribution=False).round_s)
        key = (fresh, cached, max(1, min(chunk, fresh)))
        hit = self._per_prompt.get(key)
        if hit is None:  # the same for every batch an estimate tries
            pieces = list(self._chunks(fresh, cached, key[2]))
            hit = self._per_prompt[key] = (sum(max(float(t.occupancy_s.max()), float(bw.max(initial=0.0)))
                                               for t, (_, bw) in pieces),
                                           sum(t.occupancy_s for t, _ in pieces), sum(t.active_s for t, _ in pieces))
        per_prompt, occupancy, active_s = hit
        extra = tokens / fresh * per_prompt
        busy = tokens / fresh * occupancy  # each stage's share of the passes
        active = tokens / fresh * active_s
        mixed = replace(r, round_s=r.round_s + extra, cycle_s=r.cycle_s + extra,
                        parts={**r.parts, "prefill": extra}, stage_busy_s=r.stage_busy_s + busy,
                        stage_active_s=r.stage_active_s + active,
                        bottleneck=r.bottleneck if extra < r.round_s else "prefill")
        return r, mixed, r.round_s + everyone / fresh * per_prompt
