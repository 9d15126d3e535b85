"""What a step's time is made of: per-stage arrays for one piece of work (:class:`StageTimes`),
one decode round of a whole pipeline (:class:`Round`), and the tokens a speculative step
accepts. The step-time model (step.py) fills them.

Read-only by convention: memos share one instance between callers (a frozen dataclass would
enforce it, at ~2.5% of the main job's instructions for its slower constructor)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.config.schema import SpecDecode


@dataclass(slots=True)
class StageTimes:
    """Per-stage arrays (seconds) for one unit of work."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    link_s: np.ndarray  # bandwidth part of in-stage traffic (GPU all-reduce bytes)
    fixed_s: np.ndarray  # fixed latencies inside the stage
    occupancy_s: np.ndarray  # time the stage can do nothing else
    latency_s: np.ndarray  # time from entering the stage to leaving it
    active_s: np.ndarray  # power-weighted busy time: compute + memory_power_share x memory, <= the roofline


@dataclass(slots=True)
class Round:
    """One decode round of the whole pipeline for a batch of sequences."""

    batch: int
    microbatches: int
    token_latency_s: float  # one micro-batch's trip through every stage and hop (+ drafts, overhead)
    cycle_s: float  # M micro-batches through the busiest stage (or link), + interleaved prefill
    round_s: float  # max of the two: time between a sequence's successive steps
    accepted_tokens: float  # tokens each sequence gains per round
    bottleneck: str
    parts: dict  # seconds per component of the critical path, for attribution
    stage_busy_s: np.ndarray  # per stage: busy seconds in this round (utilisation)
    link_busy_s: np.ndarray  # per hop: seconds the link carries data in this round
    stage_active_s: np.ndarray  # per stage: power-weighted busy seconds (StageTimes.active_s)


def accepted_per_step(sd: SpecDecode | None) -> float:
    """Tokens a sequence gains per speculative step: 1 + a + ... + a^k (k drafted, acceptance a)."""
    if sd is None:
        return 1.0
    a, k = sd.acceptance_rate, sd.draft_tokens
    return (1.0 - a ** (k + 1)) / (1.0 - a)
