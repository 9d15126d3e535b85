"""What a step's time is made of: per-stage arrays for one piece of work (:class:`StageTimes`),
one decode round of a whole pipeline (:class:`Round`), a round's time by cause, and the
tokens a speculative step accepts. The step-time model (step.py) fills them.

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
    # of the roofline time (latency_s - fixed_s - link_s), the seconds in compute-bound kernels (GPU:
    # the GEMMs and attention each bound on its own; wafer: a layer's one roofline)
    compute_bound_s: np.ndarray


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


PARTS = ("pipeline_latency", "io_link", "compute", "memory_bw")


def latency_parts(t: StageTimes, hop_lat: np.ndarray, hop_bw: np.ndarray, extra_s: float,
                  small: tuple | None = None) -> dict:
    """A latency-bound round's time by cause, adding up to its token latency: fixed latencies
    (per layer, hop latencies, ``extra_s``: step overhead and drafts), link bytes, and each
    stage's roofline share of its latency (``latency - fixed - link``: ``layers_held x t_layer``
    on a wafer) as compute or memory as that stage is bound. ``small``: the smaller
    micro-batches' (stage times, hop latency, hop bandwidth, share of the round, their fixed
    extra); the two trips' parts are then mixed by their shares."""
    work = t.latency_s - t.fixed_s - t.link_s
    compute = float(t.compute_bound_s.sum())
    parts = dict(zip(PARTS, (float(t.fixed_s.sum() + (hop_lat - hop_bw).sum()) + extra_s,
                             float(hop_bw.sum() + t.link_s.sum()), compute, float(work.sum()) - compute)))
    if small is None:
        return parts
    t0, lat0, bw0, w, extra0 = small
    parts0 = latency_parts(t0, lat0, bw0, extra0)
    return {k: (1 - w) * v + w * parts0[k] for k, v in parts.items()}


def weighted(a: StageTimes, na: float, b: StageTimes | None, nb: float) -> StageTimes:
    """``na`` pieces of work ``a`` and ``nb`` of ``b`` (None: none) through the same stages."""
    if b is None:
        return StageTimes(*(na * getattr(a, f) for f in a.__slots__))
    return StageTimes(*(na * getattr(a, f) + nb * getattr(b, f) for f in a.__slots__))


def cycle_parts(t: StageTimes, i: int, fill: StageTimes | None, link_cycle: float,
                stage_cycle: float, wafer: bool) -> dict:
    """A throughput-bound round's time by cause, adding up to its cycle: the link's bytes when
    a link is the busiest resource; else stage ``i``'s occupancy by the round's micro-batches
    (``t``: their sum; each GPU micro-batch: roofline + all-reduce bytes + fixed time; wafer: one
    layer time) plus, on a wafer, the prefill ``fill`` in its bubbles (its busiest stage's layer
    time), each roofline part as compute or memory as it is bound."""
    parts = dict.fromkeys(PARTS, 0.0)
    if link_cycle >= stage_cycle:
        parts["io_link"] = link_cycle
        return parts
    link, fixed = (0.0, 0.0) if wafer else (float(t.link_s[i]), float(t.fixed_s[i]))
    parts["io_link"], parts["pipeline_latency"] = link, fixed
    roof = float(t.occupancy_s[i]) - link - fixed
    if wafer:  # one layer time, bound one way
        parts["compute" if t.compute_s[i] >= t.memory_s[i] else "memory_bw"] += roof
    else:  # the GEMMs and attention, each bound its own way
        parts["compute"] += float(t.compute_bound_s[i])
        parts["memory_bw"] += roof - float(t.compute_bound_s[i])
    if fill is not None:
        j = int(fill.occupancy_s.argmax())
        parts["compute" if fill.compute_s[j] >= fill.memory_s[j] else "memory_bw"] += float(fill.occupancy_s[j])
    return parts
