"""Step-time model: how long one stage takes for a decode step or a prefill chunk.

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
The discrete-event simulator uses the same functions.
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
class StepTime:
    compute_s: float
    memory_s: float
    link_s: float  # bandwidth part of in-stage traffic (GPU all-reduce bytes)
    fixed_s: float  # fixed latencies inside the stage
    occupancy_s: float  # time the stage can do nothing else
    latency_s: float  # time from entering the stage to leaving it


@dataclass(frozen=True)
class Round:
    """One decode round of the whole pipeline for a batch of sequences."""

    batch: int
    microbatches: int
    token_latency_s: float  # one micro-batch's trip through every stage and hop (+ drafts, overhead)
    cycle_s: float  # M micro-batches through the busiest stage (or link)
    round_s: float  # max of the two: time between a sequence's successive steps
    accepted_tokens: float  # tokens each sequence gains per round
    bottleneck: str
    parts: dict  # seconds per component, for attribution


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
        self.kv_precision = kv_precision
        self.tokens_per_step = 1 + (spec_decode.draft_tokens if spec_decode else 0)
        self.accepted = accepted_per_step(spec_decode)
        self.microbatches = microbatches
        L = shape.layers
        wb = PRECISION_BYTES[weight_precision]
        self._frac = [s.fractions(L) for s in placement.stages]
        self._expert_bytes = [float(f @ shape.expert_params) * wb for f in self._frac]
        self._kv_tok = shape.kv_bytes_per_token(kv_precision)
        self._layer_lat = dev.layer_latency_s(shape.spec.hidden) if dev.kind == "wafer" else 0.0

    # ------------------------------------------------------------ one stage
    def _stage(self, i: int, flops: float, weight_tokens: float, kv_bytes: float) -> StepTime:
        st, dev, k = self.pl.stages[i], self.dev, self.pl.stages[i].devices
        touched = experts_touched(self.shape.experts, self.shape.active_experts, weight_tokens)
        frac = touched / self.shape.experts if self.shape.experts else 1.0
        wbytes = st.weight_bytes - self._expert_bytes[i] * (1.0 - frac)
        compute = flops / (self.peak_flops * dev.compute_efficiency * k)
        memory = (wbytes + kv_bytes * self.pl.kv_replication) / (dev.mem_bw_bytes_per_s * dev.mem_efficiency * k)
        roof = max(compute, memory)
        if dev.kind == "wafer":
            fixed = st.layers_touched * self._layer_lat
            return StepTime(compute, memory, 0.0, fixed, roof, roof + fixed)
        n_layers = float(self._frac[i].sum())
        link = fixed = 0.0
        if k > 1:
            msg = weight_tokens * self.shape.spec.hidden * ACT_BYTES
            link = 2 * n_layers * 2 * (k - 1) / k * msg / dev.scale_up_bw_bytes_per_s
            fixed = 2 * n_layers * dev.allreduce_s
        busy = roof + link + fixed
        return StepTime(compute, memory, link, fixed, busy, busy)

    def _decode_work(self, i: int, batch: float, context: float) -> tuple[float, float, float]:
        """(FLOPs, weight-touching tokens, KV bytes read) for ``batch`` sequences' decode step."""
        f, tokens = self._frac[i], batch * self.tokens_per_step
        flops = tokens * (float(f @ self.shape.decode_flops(context))
                          + (self.shape.head_flops if self.pl.stages[i].holds_head else 0.0))
        held = np.where(self.shape.window > 0, np.minimum(context, self.shape.window), context)
        return flops, tokens, batch * float(f @ (self._kv_tok * held))

    def _prefill_work(self, i: int, tokens: float, start: float, seqs: float) -> tuple[float, float, float]:
        f = self._frac[i]
        flops = seqs * (float(f @ self.shape.prefill_flops(start, tokens))
                        + (self.shape.head_flops if self.pl.stages[i].holds_head else 0.0))
        held = np.where(self.shape.window > 0, np.minimum(start, self.shape.window), start)
        return flops, seqs * tokens, seqs * float(f @ (self._kv_tok * held))

    def decode_stage(self, i: int, batch: float, context: float, prefill_tokens: float = 0.0,
                     prompt: float = 1.0) -> StepTime:
        """Stage ``i`` advancing ``batch`` sequences at ``context`` by one step; optionally fused
        with ``prefill_tokens`` of ``prompt``-long prompts in the same pass (chunked prefill:
        weights are read once for both)."""
        fl, tok, kv = self._decode_work(i, batch, context)
        if prefill_tokens > 0:
            pf, pt, pk = self._prefill_work(i, prompt, 0.0, prefill_tokens / prompt)
            fl, tok, kv = fl + pf, tok + pt, kv + pk
        return self._stage(i, fl, tok, kv)

    def prefill_stage(self, i: int, tokens: float, start: float = 0.0, seqs: float = 1.0) -> StepTime:
        """Stage ``i`` prefilling ``seqs`` sequences of ``tokens`` new tokens after ``start`` cached."""
        return self._stage(i, *self._prefill_work(i, tokens, start, seqs))

    def hop_s(self, i: int, tokens: float) -> tuple[float, float]:
        """(latency, bandwidth part) of moving ``tokens`` activations from stage i to i+1."""
        vectors = 2 if self.pl.stages[i].ends_mid_layer else 1
        bw_part = tokens * self.shape.spec.hidden * ACT_BYTES * vectors / self.dev.io_bw_bytes_per_s
        return self.dev.io_latency_s + bw_part, bw_part

    # ------------------------------------------------------------ whole pipeline
    def decode_round(self, batch: int, context: float, prefill_tokens: float = 0.0, prompt: float = 1.0) -> Round:
        """One round: every sequence advances one step. ``prefill_tokens`` (per round) of other
        requests' prompts are fused into the GPU steps, or fill the wafer pipeline's bubbles."""
        S = len(self.pl.stages)
        M = max(1, min(batch, self.microbatches or S))
        b = math.ceil(batch / M)
        fused = prefill_tokens / M if self.dev.kind == "gpu" else 0.0
        steps = [self.decode_stage(i, b, context, fused, prompt) for i in range(S)]
        bubble_fill = 0.0
        if self.dev.kind == "wafer" and prefill_tokens > 0:
            bubble_fill = max(self.prefill_stage(i, prompt, 0.0, prefill_tokens / prompt).occupancy_s
                              for i in range(S))
        hops = [self.hop_s(i, b * self.tokens_per_step) for i in range(S - 1)]
        fixed = sum(s.fixed_s for s in steps)
        base = sum(s.latency_s for s in steps) + sum(h[0] for h in hops) + self.dev.step_overhead_s
        draft = 0.0
        if self.sd is not None:
            per_layer = (base - self.dev.step_overhead_s) / self.shape.layers
            draft = self.sd.draft_tokens * self.sd.draft_layers * per_layer
        latency = base + draft
        busiest = max(range(S), key=lambda i: steps[i].occupancy_s)
        link_cycle = M * max((h[1] for h in hops), default=0.0)
        cycle = max(M * steps[busiest].occupancy_s + bubble_fill, link_cycle)
        parts = {
            "pipeline_latency": fixed + self.dev.step_overhead_s + draft + sum(h[0] - h[1] for h in hops),
            "io_link": sum(h[1] for h in hops) + sum(s.link_s for s in steps),
            "compute": sum(s.compute_s for s in steps if s.compute_s >= s.memory_s),
            "memory_bw": sum(s.memory_s for s in steps if s.memory_s > s.compute_s),
        }
        if cycle > latency:
            s = steps[busiest]
            neck = "io_link" if link_cycle >= M * s.occupancy_s else (
                "compute" if s.compute_s >= s.memory_s else "memory_bw")
        else:
            neck = max(parts, key=parts.get)
        return Round(batch, M, latency, cycle, max(latency, cycle), self.accepted, neck, parts)

    def steady_round(self, batch: int, context: float, prompt: int, output: int) -> tuple[Round, Round]:
        """(pure decode round, round with the other sequences' prefills interleaved).

        In steady state each round finishes batch*accepted/output sequences whose
        replacements need prefilling; a sequence's own prefill is in its TTFT, so the
        others' share is (batch-1)*accepted*prompt/output prompt tokens per round."""
        r = self.decode_round(batch, context)
        tokens = (batch - 1) * r.accepted_tokens * prompt / output
        return r, (self.decode_round(batch, context, tokens, prompt) if tokens > 0 else r)

    def ttft_s(self, prompt: int, cached: int = 0, chunk: int = 8192) -> float:
        """Time to first token on an idle replica: chunked prefill flowing through the stages."""
        S = len(self.pl.stages)
        free = [0.0] * S
        done = 0.0
        pos = cached
        while pos < cached + prompt:
            n = min(chunk, cached + prompt - pos)
            arrive = 0.0
            for i in range(S):
                st = self.prefill_stage(i, n, pos)
                start = max(free[i], arrive)
                free[i] = start + st.occupancy_s
                arrive = start + st.latency_s
                if i < S - 1:
                    arrive += self.hop_s(i, n)[0]
            done = arrive
            pos += n
        return done + self.dev.step_overhead_s
