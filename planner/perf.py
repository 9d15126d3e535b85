"""Step-time model: how long each pipeline stage takes for a decode step or a prefill chunk.

A roofline (compute at the precision's rate, bytes at the memory tier's bandwidth) plus
named fixed latencies, so calibration moves a handful of physical parameters:
- wafer: ``layer_latency`` per layer touched (fabric traversal + sync inside the wafer);
  it is *latency*, not occupancy: layers sit on their own regions of the wafer, so other
  micro-batches (and prefill chunks) flow through while a token crosses them;
- every stage boundary: one link hop (io latency + activation bytes / io bandwidth), with
  an extra hidden vector when the cut falls inside a layer (the partial sum travels on);
- GPU: two all-reduces per layer in the TP group (latency + ring bytes / NVLink), which,
  like the roofline, block the GPU: GPU steps are synchronous;
- per round: ``step_overhead`` (scheduling, sampling, host);
- speculative decoding: k drafted tokens (each costing ``draft_layers`` layers of latency),
  k+1 tokens verified per sequence per step, (1 - a^(k+1)) / (1 - a) accepted per step.
Every function returns arrays over stages (per-stage work = stage-fraction matrix @ per-layer
vector), so a 300-wafer pipeline costs one matrix product, not 300 Python calls. The
discrete-event simulator uses the same functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config.schema import SpecDecode
from .hardware import Device
from .model import PRECISION_BYTES, ModelShape, experts_touched
from .placement import Placement

ACT_BYTES = 2.0  # activations cross links in 16-bit


@dataclass(frozen=True)
class StageTimes:
    """Per-stage arrays (seconds) for one unit of work."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    link_s: np.ndarray  # bandwidth part of in-stage traffic (GPU all-reduce bytes)
    fixed_s: np.ndarray  # fixed latencies inside the stage
    occupancy_s: np.ndarray  # time the stage can do nothing else
    latency_s: np.ndarray  # time from entering the stage to leaving it


@dataclass(frozen=True)
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


def accepted_per_step(sd: SpecDecode | None) -> float:
    if sd is None:
        return 1.0
    a, k = sd.acceptance_rate, sd.draft_tokens
    return (1.0 - a ** (k + 1)) / (1.0 - a)


class StepModel:
    """Step times of one placement. Built once per point; cheap to call many times."""

    def __init__(self, shape: ModelShape, placement: Placement, dev: Device, weight_precision: str,
                 kv_precision: str, mode: str = "auto", spec_decode: SpecDecode | None = None,
                 microbatches: int | None = None):
        self.shape, self.pl, self.dev, self.sd = shape, placement, dev, spec_decode
        self.peak_flops, self.compute_mode = dev.flops_for(weight_precision, mode)
        self.tokens_per_step = 1 + (spec_decode.draft_tokens if spec_decode else 0)
        self.accepted = accepted_per_step(spec_decode)
        self.microbatches = microbatches
        st = placement.stages
        L = shape.layers
        self.F = np.stack([s.fractions(L) for s in st])  # stages x layers
        self.S = len(st)
        self.k = np.array([s.devices for s in st], dtype=float)
        self.weights = np.array([s.weight_bytes for s in st])
        self.expert_bytes = self.F @ shape.expert_params * PRECISION_BYTES[weight_precision]
        self.layers_touched = np.array([s.layers_touched for s in st], dtype=float)
        self.layers_held = self.F.sum(axis=1)
        self.head = np.array([s.holds_head for s in st], dtype=float) * shape.head_flops
        self.mid = np.array([s.ends_mid_layer for s in st[:-1]], dtype=float)
        self.kv_tok = shape.kv_bytes_per_token(kv_precision)
        # GPU collectives per layer. GQA: tensor-parallel attention and MLP, two ring all-reduces
        # per layer. MLA (DeepSeek-style serving): data-parallel attention (no collective), MoE
        # layers an all-to-all dispatch + combine of each GPU's own tokens to top-k experts, dense
        # MLP layers one all-reduce.
        moe = (shape.expert_params > 0).astype(float)
        att = shape.spec.attention
        self.dp_attention = placement.kind == "gpu" and att is not None and att.type == "mla"
        if self.dp_attention:
            self.allreduces = self.F @ (1.0 - moe)  # dense-MLP layers: one all-reduce each
            self.alltoalls = self.F @ moe
        else:
            self.allreduces = 2.0 * self.layers_held
            self.alltoalls = np.zeros(self.S)
        self.layer_lat = dev.layer_latency_s(shape.spec.hidden) if dev.kind == "wafer" else 0.0

    # ------------------------------------------------------------ per-stage work
    def _held(self, context: float) -> np.ndarray:
        return np.where(self.shape.window > 0, np.minimum(context, self.shape.window), context)

    def _times(self, flops: np.ndarray, weight_tokens: float, kv_bytes: np.ndarray) -> StageTimes:
        dev, shape = self.dev, self.shape
        frac = experts_touched(shape.experts, shape.active_experts, weight_tokens) / shape.experts \
            if shape.experts else 1.0
        wbytes = self.weights - self.expert_bytes * (1.0 - frac)
        compute = flops / (self.peak_flops * dev.compute_efficiency * self.k)
        memory = (wbytes + kv_bytes * self.pl.kv_replication) / (dev.mem_bw_bytes_per_s * dev.mem_efficiency * self.k)
        roof = np.maximum(compute, memory)
        zero = np.zeros(self.S)
        if dev.kind == "wafer":
            fixed = self.layers_touched * self.layer_lat
            return StageTimes(compute, memory, zero, fixed, roof, roof + fixed)
        tp = self.k
        msg = weight_tokens * shape.spec.hidden * ACT_BYTES
        ring = 2 * (tp - 1) / tp * msg  # bytes each GPU moves in one ring all-reduce
        a2a = 2 * (msg / tp) * max(shape.active_experts, 1) * (tp - 1) / tp  # dispatch + combine
        link = np.where(tp > 1, (self.allreduces * ring + self.alltoalls * a2a) / dev.scale_up_bw_bytes_per_s, 0.0)
        fixed = np.where(tp > 1, (self.allreduces + 2 * self.alltoalls) * dev.allreduce_s, 0.0)
        busy = roof + link + fixed
        return StageTimes(compute, memory, link, fixed, busy, busy)

    def decode(self, batch: float, context: float, prefill_tokens: float = 0.0, prompt: float = 1.0,
               prefill_start: float = 0.0) -> StageTimes:
        """Every stage advancing ``batch`` sequences at ``context`` by one step; optionally fused
        with ``prefill_tokens`` of ``prompt``-long prompts in the same pass (chunked prefill:
        weights are read once for both)."""
        tokens = batch * self.tokens_per_step
        flops = tokens * (self.F @ self.shape.decode_flops(context) + self.head)
        kv = batch * (self.F @ (self.kv_tok * self._held(context)))
        if prefill_tokens > 0:
            seqs = prefill_tokens / prompt
            flops = flops + seqs * (self.F @ self.shape.prefill_flops(prefill_start, prompt) + self.head)
            tokens += prefill_tokens
        return self._times(flops, tokens, kv)

    def prefill(self, tokens: float, start: float = 0.0, seqs: float = 1.0) -> StageTimes:
        """Every stage prefilling ``seqs`` sequences of ``tokens`` new tokens after ``start`` cached."""
        flops = seqs * (self.F @ self.shape.prefill_flops(start, tokens) + self.head)
        kv = seqs * (self.F @ (self.kv_tok * self._held(start)))
        return self._times(flops, seqs * tokens, kv)

    def hops(self, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        """(latency, bandwidth part) of each hop i -> i+1 carrying ``tokens`` activations."""
        bw = tokens * self.shape.spec.hidden * ACT_BYTES * (1.0 + self.mid) / self.dev.io_bw_bytes_per_s
        return self.dev.io_latency_s + bw, bw

    # ------------------------------------------------------------ whole pipeline
    def decode_round(self, batch: int, context: float, prefill_tokens: float = 0.0, prompt: float = 1.0,
                     prefill_start: float = 0.0) -> Round:
        """One round: every sequence advances one step. ``prefill_tokens`` (per round) of
        ``prompt``-token prompt pieces starting at ``prefill_start`` are fused into the GPU
        steps, or fill the wafer pipeline's bubbles."""
        M = max(1, min(batch, self.microbatches or self.S))
        b = math.ceil(batch / M)
        fused = prefill_tokens / M if self.dev.kind == "gpu" else 0.0
        t = self.decode(b, context, fused, prompt, prefill_start)
        bubble_s = np.zeros(self.S)
        if self.dev.kind == "wafer" and prefill_tokens > 0:
            bubble_s = self.prefill(prompt, prefill_start, prefill_tokens / prompt).occupancy_s
        bubble = float(bubble_s.max())
        hop_lat, hop_bw = self.hops(b * self.tokens_per_step)
        overhead = self.dev.step_overhead_s
        base = float(t.latency_s.sum() + hop_lat.sum()) + overhead
        draft = 0.0
        if self.sd is not None:
            draft = self.sd.draft_tokens * self.sd.draft_layers * (base - overhead) / self.shape.layers
        latency = base + draft
        busiest = int(np.argmax(t.occupancy_s))
        stage_cycle = M * float(t.occupancy_s[busiest]) + bubble
        link_cycle = M * float(hop_bw.max()) if self.S > 1 else 0.0
        cycle = max(stage_cycle, link_cycle)
        roof = np.maximum(t.compute_s, t.memory_s)
        compute_bound = t.compute_s >= t.memory_s
        parts = {
            "pipeline_latency": float(t.fixed_s.sum() + (hop_lat - hop_bw).sum()) + overhead + draft,
            "io_link": float(hop_bw.sum() + t.link_s.sum()),
            "compute": float(roof[compute_bound].sum()),
            "memory_bw": float(roof[~compute_bound].sum()),
        }
        if cycle > latency:
            if link_cycle >= stage_cycle:
                neck = "io_link"
            else:
                neck = "compute" if compute_bound[busiest] else "memory_bw"
            parts = {"cycle_" + k: v for k, v in parts.items()}
        else:
            neck = max(parts, key=parts.get)
        return Round(batch, M, latency, cycle, max(latency, cycle), self.accepted, neck, parts,
                     M * t.occupancy_s + bubble_s, M * hop_bw)

    def prefill_round(self, tokens: float, start: float = 0.0) -> tuple[float, float]:
        """(cycle, pass) for one prefill chunk on an otherwise idle pipeline: the next chunk can
        enter after ``cycle`` (busiest stage), this one's output leaves after ``pass``."""
        t = self.prefill(tokens, start)
        hop_lat, _ = self.hops(tokens)
        cycle = float(t.occupancy_s.max())
        return cycle, float(t.latency_s.sum() + hop_lat.sum()) + self.dev.step_overhead_s

    def steady_round(self, batch: int, context: float, prompt: int, output: int) -> tuple[Round, Round]:
        """(pure decode round, round with the other sequences' prefills interleaved).

        In steady state each round finishes batch*accepted/output sequences whose
        replacements need prefilling; a sequence's own prefill is in its TTFT, so the
        others' share is (batch-1)*accepted*prompt/output prompt tokens per round."""
        r = self.decode_round(batch, context)
        tokens = (batch - 1) * r.accepted_tokens * prompt / output
        return r, (self.decode_round(batch, context, tokens, prompt) if tokens > 0 else r)

    def ttft_s(self, prompt: int, cached: int = 0, chunk: int = 8192) -> float:
        """Time to first token on an idle replica: chunked prefill flowing through the stages
        (a flow shop: a chunk enters a stage when the stage is free and the chunk has arrived)."""
        free = np.zeros(self.S)
        done, pos = 0.0, cached
        while pos < cached + prompt:
            n = min(chunk, cached + prompt - pos)
            t = self.prefill(n, pos)
            hop_lat, _ = self.hops(n)
            arrive = 0.0
            for i in range(self.S):
                start = max(free[i], arrive)
                free[i] = start + t.occupancy_s[i]
                arrive = start + t.latency_s[i] + (hop_lat[i] if i < self.S - 1 else 0.0)
            done = arrive
            pos += n
        return done + self.dev.step_overhead_s
