"""Step-time model: how long each pipeline stage takes for a decode step or a prefill chunk.

A roofline (compute at the precision's *dense* rate, bytes at the memory tier's bandwidth)
plus named fixed latencies, so calibration moves a handful of physical parameters.

Wafers and SRAM chips (layer-region layout). Each layer's weights and KV sit on their own
region of cores, sized by bytes, so a core holds its share of the stage's resident bytes
whatever the layer. One layer's time for a micro-batch is therefore the busiest core's:
``t_layer = max(resident bytes / bandwidth, FLOPs / compute)`` over the whole stage (a
core reads *all* it holds for a touched layer: with experts on their own cores a MoE layer
is no faster per token than a dense one of the same bytes). A token crosses the stage's
layers one after another: latency ``layers_held x (t_layer + fabric)`` where the fabric
term ``layer_base + layer_per_khidden x hidden/1024`` is the broadcast/reduce across a
region (a software profile may add ``layer_per_gb`` x the layer's weight GB); the stage is
*occupied* only ``t_layer`` per micro-batch, since the other layer regions work on other
micro-batches meanwhile (default: one per layer); a prefill chunk is cut into one piece per
layer region, so its latency is one layer time plus a piece per further layer. A layer spread
over several chips (Groq) runs on them in parallel: each chip contributes its fraction of the
layer's latency (the fabric term once per layer), and the token crosses every chip boundary
(``io.hops: devices``): n chips, n hops. Wafers (``io.hops: layers``) pay at most one per layer.

GPUs (synchronous steps): the GEMMs' roofline (weight reads) plus attention's (KV reads), kernels
run one after the other; + two all-reduces per layer in the TP group (measured times by message
size, ``scale_up.allreduce_measured``; else ``allreduce`` + ring bytes / NVLink; MLA: all-to-alls,
``alltoall`` + bytes / NVLink) + a fixed time per layer (``layer_dense``/``layer_moe``: launches,
norms, routing, top-k, sync; ``layer_mla`` more for a layer of latent attention); decode matmuls
at ``decode_efficiency``; attention at the KV's compute class; the busiest expert-parallel GPU's
routed work and reads x ``ep_imbalance``, its GEMMs at ``compute.expert_efficiency`` of dense
ones, its reads at ``expert_efficiency`` of HBM.

Every stage boundary (``io.hops: layers``: at most one per layer): one link hop (io latency +
activation bytes / io bandwidth), an extra hidden vector when the cut is inside a layer; per
round ``step_overhead``; speculative decoding: k drafted tokens (each ``draft_layers`` layers of
the main model's mean per-layer latency at one token per sequence, fixed costs included), k+1
verified per sequence per step, (1 - a^(k+1)) / (1 - a) accepted per step.
Power: each piece of work's active seconds, ``min(roofline, compute + memory_power_share x
memory)`` (README "Power"); rounds sum them per stage next to busy time.
Every function returns arrays over stages (stage-fraction matrix @ per-layer vector): a 300-wafer
pipeline costs one matrix product, not 300 Python calls; the simulator uses the same functions."""
from __future__ import annotations

import copy
import math

import numpy as np

from planner.config.schema import SpecDecode
from planner.physics.hardware import Device
from planner.physics.model import PRECISION_BYTES, ModelShape, experts_touched
from planner.physics.placement import Placement
from planner.physics.prefill import PrefillPasses
from planner.physics.steady import SteadyRounds
from planner.physics.times import Round, StageTimes, accepted_per_step, cycle_parts, latency_parts, weighted

ACT_BYTES = 2.0  # activations cross links in 16-bit


class StepModel(PrefillPasses, SteadyRounds):
    """Step times of one placement. Built once per point; cheap to call many times."""

    def __init__(self, shape: ModelShape, placement: Placement, dev: Device, weight_precision: str,
                 kv_precision: str, mode: str = "auto", spec_decode: SpecDecode | None = None,
                 microbatches: int | None = None):
        self.shape, self.pl, self.sd, self.wp, self.mode, self.kvp = shape, placement, spec_decode, weight_precision, \
            mode, kv_precision
        self.tokens_per_step = 1 + (spec_decode.draft_tokens if spec_decode else 0)
        self.accepted = accepted_per_step(spec_decode)
        self.wafer = dev.kind == "wafer"
        st, L = placement.stages, shape.layers
        self.F = np.stack([s.fractions(L) for s in st])  # stages x layers
        self.S = len(st)
        # default micro-batches: one per layer region on wafers/chips, one per stage on GPUs
        self.microbatches = microbatches or (L if self.wafer else self.S)
        self.k = np.array([s.devices for s in st], dtype=float)
        self.weights = np.array([s.weight_bytes for s in st])
        self.expert_bytes = self.F @ shape.expert_params * PRECISION_BYTES[weight_precision]
        self.layers_held = self.F.sum(axis=1)
        holds = np.array([s.holds_head for s in st], dtype=float)
        self.head = holds * shape.head_flops
        # hidden vectors a hop carries: one, two when the cut falls inside a layer
        self._mid1 = 1.0 + np.array([s.ends_mid_layer for s in st[:-1]], dtype=float)
        self.kv_tok = shape.kv_bytes_per_token(kv_precision)
        self.active2 = self.F @ (2.0 * shape.layer_active_params)  # matmul FLOPs per token
        # wafer floor: a pass through a layer region costs each core one multiply of everything
        # it holds (a touched expert's cores do their whole share even for one token)
        self.pass2 = 2.0 * (self.F @ shape.layer_params + holds * shape.head_params)
        self.expert2 = self.F @ (2.0 * shape.expert_active_params)  # routed-expert part of it
        self.moe = (shape.expert_params > 0).astype(float)
        # GPU collectives per layer. Tensor-parallel attention and MLP: two ring all-reduces per
        # layer. Data-parallel attention (MLA's default, DeepSeek-style serving; GQA's attention DP):
        # no collective for attention, MoE layers an all-to-all dispatch + combine of each GPU's own
        # tokens to top-k experts, dense MLP layers one all-reduce.
        att = shape.spec.attention
        self.q_per_kv = 1.0 if att is None else float(att.heads if att.type == "mla" else
                                                      att.heads / (att.kv_heads or att.heads))
        self.mla = att is not None and att.type == "mla"
        self.dp_attention = placement.kind == "gpu" and placement.dp_attention
        if self.dp_attention:
            self.allreduces = self.F @ (1.0 - self.moe)  # dense-MLP layers: one all-reduce each
            self.alltoalls = self.F @ self.moe
        else:
            self.allreduces = 2.0 * self.layers_held
            self.alltoalls = np.zeros(self.S)
        self.layer_bytes = self.F @ shape.layer_params * PRECISION_BYTES[weight_precision]  # per stage
        self._kept: dict = {}  # (per-layer figure, arguments) -> its per-stage sums (_per_stage)
        self._kv_fn = self._kv_layer  # one key for _kept in every copy (with_device)
        self._use(dev)

    def _use(self, dev: Device) -> None:
        """What the device's figures set (the layout above does not depend on them)."""
        self.dev = dev
        self.peak_flops, self.compute_mode = dev.flops_for(self.wp, self.mode)
        self.attn_flops = dev.attention_flops_for(self.wp, self.kvp, self.mode, "decode")
        self.prefill_attn_rate = dev.attention_flops_for(self.wp, self.kvp, self.mode, "prefill")
        self.imbalance = np.where((self.k > 1) & (self.expert2 > 0), dev.ep_imbalance, 1.0) \
            if not self.wafer else np.ones(self.S)  # expert-parallel imbalance when experts shard
        S, L = self.S, self.shape.layers  # hops: every boundary, or at most one per layer (io.hops)
        self.hop_share = 1.0 if dev.hop_each_device or S <= 1 else min(1.0, L / (S - 1))
        self.bw = dev.mem_bw_bytes_per_s * dev.mem_efficiency * self.k  # per stage, bytes/s
        self._expert_bw = dev.mem_bw_bytes_per_s * dev.expert_mem_efficiency * self.k
        # each stage's fixed latencies. Wafer: the fabric time per layer crossed, plus the layers'
        # weight bytes (the head's excluded) x seconds per GB. GPU: collectives, plus the kernel
        # time per layer per step (launches, norms, routing, synchronisation)
        if self.wafer:
            self.layer_fixed = np.zeros(S)
            self._fixed = self.layers_held * dev.layer_latency_s(self.shape.spec.hidden) \
                + self.layer_bytes * dev.layer_per_gb_s / 1e9
        else:
            self.layer_fixed = self.F @ np.where(self.moe > 0, dev.layer_moe_s, dev.layer_dense_s)
            if self.mla and dev.layer_mla_s:  # MLA's extra kernels, every layer
                self.layer_fixed = self.layer_fixed + self.layers_held * dev.layer_mla_s
            self._fixed = np.where(self.k > 1, self.allreduces * dev.allreduce_fixed_s
                                   + 2 * self.alltoalls * dev.alltoall_s, 0.0) + self.layer_fixed
        self._zero = np.zeros(self.S)  # (shared, like every array a StageTimes holds: read-only)
        self._passes: dict = {}  # (prompt, cached, chunk) -> prefill_pass
        self._sides: dict = {}  # (batch, context) -> _decode_side without fused prefill
        self._per_prompt: dict = {}  # (fresh, cached, chunk) -> a GPU's prefill passes of one prompt (steady_round)
        # decode's two halves, kept apart: a GPU step fuses one (batch, context) with many prefill
        # pieces and one piece with many batches (decode)
        self._decoded: dict = {}  # (batch, context, tokens_per_seq) -> decode without prefill
        self._work: dict = {}  # the same key -> (tokens, compute, alu, kv): decode fused with prefill pieces
        self._prefilled: dict = {}  # (tokens, start, seqs) -> prefill
        self._fused: dict = {}  # (prefill tokens, prompt, start) -> the piece's compute seconds
        self._by_tokens: dict = {}  # a GPU step's tokens -> (experts' share, collectives): _token_terms
        self._hops: dict = {}  # tokens -> hops(tokens)

    def with_device(self, dev: Device) -> StepModel:
        """The same layout under other device figures (a calibration fit moves parameters, not
        placements): the layout and its per-stage sums are shared, the rest is recomputed."""
        new = copy.copy(self)
        new._use(dev)
        return new

    # ------------------------------------------------------------ per-stage work
    def _attn_s(self, attn_flops: np.ndarray, eff: float, prefill: bool = False) -> np.ndarray:
        """Seconds of attention per stage at its own rate (``prefill``: the prefill kernels')."""
        return attn_flops / (self.prefill_attn_rate if prefill else self.attn_flops) / eff / self.k

    def _compute_s(self, tokens: float, attn_s: np.ndarray, seqs: float, eff: float) -> np.ndarray:
        """Seconds of compute per stage: ``tokens`` through the matmuls (the busiest GPU's routed
        experts weighted by the imbalance), ``seqs`` lm-head rows, plus ``attn_s`` (_attn_s)."""
        if self.wafer:
            mat = tokens * self.active2 + seqs * self.head
            if tokens > 0:
                mat = np.maximum(mat, self.pass2)
            return mat / self.peak_flops / eff / self.k + attn_s
        dense = tokens * (self.active2 - self.expert2) + seqs * self.head
        experts = tokens * self.imbalance * self.expert2 / self.dev.expert_compute_efficiency
        return (dense + experts) / self.peak_flops / eff / self.k + attn_s

    def _times(self, compute: np.ndarray, weight_tokens: float, kv_bytes: np.ndarray, attn: np.ndarray,
               split: bool = False, alu: np.ndarray | None = None) -> StageTimes:
        """``attn``: the attention's part of ``compute``, a kernel of its own on a GPU (below).
        ``split``: a prefill chunk, which a wafer cuts into one piece per layer region so the
        regions work on it together (latency: one full layer time + a piece per further layer).
        ``alu``: (the compute units' busy seconds, attention's part) for power (default ``compute``,
        ``attn``; a thin decode GEMM's extra time waits on data, not on arithmetic). Power: active
        seconds ``min(roofline, alu + memory_power_share x memory)``, per kernel on a GPU."""
        alu, alu_attn = (compute, attn) if alu is None else alu
        kv = kv_bytes if self.pl.kv_replication == 1 else kv_bytes * self.pl.kv_replication
        m = self.dev.memory_power_share
        if self.wafer:
            # a core reads everything it holds for the layer: resident bytes, not touched ones
            memory = (self.weights + kv) / self.bw
            t_layer = np.maximum(compute, memory)
            n, fixed = self.layers_held, self._fixed
            if split:
                piece = np.maximum(memory, compute / np.maximum(n, 1.0))
                latency = np.where(n >= 1, t_layer + (n - 1) * piece, n * t_layer)
            else:
                latency = n * t_layer
            return StageTimes(compute, memory, self._zero, fixed, t_layer, latency + fixed,
                              np.minimum(np.maximum(alu, memory), alu + m * memory),
                              np.where(compute >= memory, latency, 0.0))
        hit = self._by_tokens.get(weight_tokens)
        if hit is None:
            hit = self._by_tokens[weight_tokens] = self._token_terms(weight_tokens)
        frac, link = hit
        # the GEMMs (weights) and attention (KV) are kernels run one after the other: each its own
        # roofline, summed; one max over the whole step would hide the KV reads under the GEMMs
        weight_s = (self.weights - self.expert_bytes) / self.bw + self.expert_bytes * frac / self._expert_bw
        kv_s = kv / self.bw
        memory = weight_s + kv_s
        gemm = compute - attn
        roof_g, roof_a = np.maximum(gemm, weight_s), np.maximum(attn, kv_s)
        busy = roof_g + roof_a + link + self._fixed
        active = np.minimum(roof_g, alu - alu_attn + m * weight_s) + np.minimum(roof_a, alu_attn + m * kv_s)
        return StageTimes(compute, memory, link, self._fixed, busy, busy, active,
                          np.where(gemm >= weight_s, roof_g, 0.0) + np.where(attn >= kv_s, roof_a, 0.0))

    def _token_terms(self, weight_tokens: float) -> tuple:
        """A GPU step's terms set by its token count alone: the busiest GPU's share of the experts
        touched, and each stage's collective seconds (all-reduces, all-to-alls)."""
        shape, dev = self.shape, self.dev
        frac = experts_touched(shape.experts, shape.active_experts, weight_tokens) / shape.experts \
            if shape.experts else 1.0
        frac = np.minimum(1.0, frac * self.imbalance)  # the busiest GPU's experts
        tp = self.k
        msg = weight_tokens * shape.spec.hidden * ACT_BYTES
        a2a = 2 * (msg / tp) * max(shape.active_experts, 1) * (tp - 1) / tp  # dispatch + combine
        # one all-reduce in a stage's TP group (all alike): measured, else ring bytes over NVLink
        ar = 2 * (tp - 1) / tp * msg / dev.scale_up_bw_bytes_per_s if dev.allreduce_curve is None \
            else dev.allreduce_curve.seconds(int(tp.max()), msg)
        link = np.where(tp > 1, self.allreduces * ar + self.alltoalls * a2a / dev.scale_up_bw_bytes_per_s, 0.0)
        return frac, link

    def activity(self, stage_active_share) -> float:
        """The replica's devices' activity u (power = idle + (load - idle) x u, README "Power"):
        each stage's active share of the time (active seconds / wall seconds), weighted by the
        devices it spans."""
        return float(self.k @ np.asarray(stage_active_share, dtype=float)) / float(self.k.sum())

    def decode(self, batch: float, context: float, prefill_tokens: float = 0.0, prompt: float = 1.0,
               prefill_start: float = 0.0, tokens_per_seq: int | None = None) -> StageTimes:
        """Every stage advancing ``batch`` sequences at ``context`` by one step; optionally fused
        with ``prefill_tokens`` of ``prompt``-long prompts in the same pass (chunked prefill:
        weights are read once for both). ``tokens_per_seq``: default the verified tokens."""
        key = (batch, context, tokens_per_seq)
        if prefill_tokens <= 0:  # the prompt and its position do not enter: the whole result kept
            hit = self._decoded.get(key)
            if hit is None:
                work = self._work.get(key) or self._decode_work(batch, context, tokens_per_seq)
                tokens, compute, alu, kv, attn = work
                hit = self._decoded[key] = self._times(compute, tokens, kv, attn, alu=alu)
            return hit
        work = self._work.get(key)
        if work is None:
            work = self._work[key] = self._decode_work(batch, context, tokens_per_seq)
        tokens, compute, alu, kv, attn = work
        key = (prefill_tokens, prompt, prefill_start)
        hit = self._fused.get(key)
        if hit is None:
            seqs = prefill_tokens / prompt
            eff = self.dev.compute_efficiency
            pattn = self._attn_s(seqs * self._per_stage(self.shape.prefill_attn_flops, prefill_start, prompt), eff, True)
            hit = self._fused[key] = (self._compute_s(prefill_tokens, pattn, seqs, eff), pattn)
        pre, pattn = hit
        return self._times(compute + pre, tokens + prefill_tokens, kv, attn + pattn,
                           alu=(alu[0] + pre, alu[1] + pattn))

    def _decode_work(self, batch: float, context: float, tokens_per_seq: int | None) -> tuple:
        """decode's own part: (tokens, compute seconds, (the compute units' busy seconds, attention's
        part of them), KV bytes, attention's seconds)."""
        tokens = batch * (tokens_per_seq or self.tokens_per_step)
        # decode attention's GEMM rows: every query head sharing a KV head (MLA: all of them).
        # Data-parallel attention puts each sequence's KV and attention on one GPU of the group:
        # the busiest holds ceil(batch/k) sequences, not batch/k (1 sequence on 72 GPUs: 72x),
        # and its attention GEMM has only their rows
        spread, rows = 1.0, tokens * self.q_per_kv
        if self.dp_attention and batch > 0:
            per_gpu = np.ceil(batch / self.k - 1e-9)
            spread, rows = self.k * per_gpu / batch, float(per_gpu.max()) * tokens / batch * self.q_per_kv
        flops = tokens * spread * self._per_stage(self.shape.decode_attn_flops, context)
        attn = self._attn_s(flops, self.dev.decode_eff(rows))
        compute = self._compute_s(tokens, attn, tokens, self.dev.decode_eff(tokens))
        alu = (compute, attn)
        if self.dev.decode_half_rows is not None:  # the ALUs' busy time at the full efficiency
            alu_attn = self._attn_s(flops, self.dev.compute_efficiency)
            alu = (self._compute_s(tokens, alu_attn, tokens, self.dev.compute_efficiency), alu_attn)
        kv = batch * spread * self._per_stage(self._kv_fn, context)
        return tokens, compute, alu, kv, attn

    def prefill(self, tokens: float, start: float = 0.0, seqs: float = 1.0) -> StageTimes:
        """Every stage prefilling ``seqs`` sequences of ``tokens`` new tokens after ``start`` cached
        (kept per arguments: a wafer round pairs one piece with many batches)."""
        key = (tokens, start, seqs)
        hit = self._prefilled.get(key)
        if hit is None:
            eff = self.dev.compute_efficiency
            attn = self._attn_s(seqs * self._per_stage(self.shape.prefill_attn_flops, start, tokens), eff, prefill=True)
            compute = self._compute_s(seqs * tokens, attn, seqs, eff)
            kv = seqs * self._per_stage(self._kv_fn, start)
            hit = self._prefilled[key] = self._times(compute, seqs * tokens, kv, attn, split=True)
        return hit

    def _per_stage(self, per_layer, *args) -> np.ndarray:
        """``F @ per_layer(*args)``, kept per (figure, arguments): one context, many batches."""
        key = (per_layer, *args)
        hit = self._kept.get(key)
        if hit is None:
            hit = self._kept[key] = self.F @ per_layer(*args)
        return hit

    def _kv_layer(self, context: float) -> np.ndarray:  # per layer: KV bytes one sequence holds
        return self.kv_tok * self.shape.held_tokens(context)

    def hops(self, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        """(latency, bandwidth part) of each hop i -> i+1 carrying ``tokens`` activations."""
        hit = self._hops.get(tokens)
        if hit is None:
            bw = tokens * self.shape.spec.hidden * ACT_BYTES * self._mid1 / self.dev.io_bw_bytes_per_s
            hit = self._hops[tokens] = ((self.dev.io_latency_s + bw) * self.hop_share, bw)
        return hit

    # ------------------------------------------------------------ whole pipeline
    def decode_round(self, batch: int, context: float, prefill_tokens: float = 0.0, prompt: float = 1.0,
                     prefill_start: float = 0.0, attribution: bool = True) -> Round:
        """One round: every sequence advances one step. ``prefill_tokens`` (per round) of
        ``prompt``-token prompt pieces starting at ``prefill_start`` are fused into the GPU
        steps, or fill the wafer pipeline's bubbles. ``attribution=False``: the times only
        (``parts`` empty, ``bottleneck`` ""), as the engine reads them."""
        M, r, t, small, hop_lat, hop_bw, latency, draft, busiest, stage_cycle, link_cycle, occ, link_busy, active = \
            self._decode_side(batch, context, prefill_tokens, prompt, prefill_start)
        busy_s, p = occ, None
        if self.wafer and prefill_tokens > 0:  # the prefill fills the pipeline's bubbles
            p = self.prefill(prompt, prefill_start, prefill_tokens / prompt)
            stage_cycle += float(np.maximum.reduce(p.occupancy_s))
            busy_s, active = occ + p.occupancy_s, active + p.active_s
        cycle = max(stage_cycle, link_cycle)
        neck, parts = "", {}
        if attribution:
            parts = cycle_parts(weighted(t, r, small[0] if small else None, M - r), busiest, p, link_cycle,
                                stage_cycle, self.wafer) if cycle > latency else \
                latency_parts(t, hop_lat, hop_bw, self.dev.step_overhead_s + draft, small)
            neck = max(parts, key=parts.get)
            if cycle > latency:
                parts = {"cycle_" + k: v for k, v in parts.items()}
        return Round(batch, M, latency, cycle, max(latency, cycle), self.accepted, neck, parts, busy_s, link_busy,
                     active)

    def _decode_side(self, batch: int, context: float, prefill_tokens: float, prompt: float,
                     prefill_start: float) -> tuple:
        """A round's figures that a wafer's prefill does not change (it only fills bubbles):
        kept per (batch, context) when no prefill is fused into the step, since the engine asks
        for one decode side with many prefill pieces. (M, stage times, hop latency and bandwidth
        parts, latency, draft part, busiest stage, its cycle, the link's cycle, and per stage
        the M micro-batches' occupancy, link busy and active seconds.) ``batch`` sequences make
        M micro-batches: r of b = ceil(batch/M) sequences, M - r of b - 1 (``small``: their stage
        times, hop latency and bandwidth, share of the latency and fixed extra, else None; with
        fewer decoders than stages, prefill-only micro-batches, share 0); the latency is a
        sequence's mean trip time weighted by tokens, which gives the round's throughput."""
        fused = prefill_tokens > 0 and not self.wafer
        hit = None if fused else self._sides.get((batch, context))
        if hit is not None:
            return hit
        # a GPU pipeline with fewer decoding sequences than stages keeps a micro-batch per stage:
        # the decoding sequences' and the spare ones each carry 1/M of the fused prefill, so it
        # follows the decode ones through the stages rather than making them wait a full pass
        per_stage = min(self.microbatches, self.S)
        alone = fused and 0 < batch < per_stage
        M = per_stage if alone else max(1, min(batch, self.microbatches))
        b = math.ceil(batch / M)
        r = batch - (b - 1) * M  # micro-batches of b sequences; the other M - r hold b - 1
        fused_per = prefill_tokens / M if fused else 0.0
        t = self.decode(b, context, fused_per, prompt, prefill_start)
        hop_lat, hop_bw = self.hops(b * self.tokens_per_step + fused_per)
        draft = self._draft_s(b, context)
        latency = self._trip(t, hop_lat) + self.dev.step_overhead_s + draft
        occ, link_busy, active, small = r * t.occupancy_s, r * hop_bw, r * t.active_s, None
        if r < M:  # the smaller micro-batches occupy the stages and travel for their own (shorter) times
            t0 = self.decode(b - 1, context, fused_per, prompt, prefill_start) if b > 1 else \
                self.prefill(prompt, prefill_start, fused_per / prompt)  # prefill only
            lat0, bw0 = self.hops((b - 1) * self.tokens_per_step + fused_per)
            occ, active, link_busy = occ + (M - r) * t0.occupancy_s, active + (M - r) * t0.active_s, link_busy + (M - r) * bw0
            if b > 1:
                extra0 = self.dev.step_overhead_s + self._draft_s(b - 1, context)
                trip0 = self._trip(t0, lat0) + extra0
                # a sequence's mean time per step (its micro-batch's trip), weighted by tokens: the
                # round that gives the right throughput; w = each kind's share of it
                rate, rate0 = r * b / latency, (M - r) * (b - 1) / trip0
                small = (t0, lat0, bw0, rate0 / (rate + rate0), extra0)
                latency = batch / (rate + rate0)
            else:  # a prefill-only micro-batch's trip is no decoding sequence's: the cycle only
                small = (t0, lat0, bw0, 0.0, 0.0)
        busiest = int(occ.argmax())
        link_cycle = float(np.maximum.reduce(link_busy)) if self.S > 1 else 0.0
        hit = (M, r, t, small, hop_lat, hop_bw, latency, draft, busiest, float(occ[busiest]), link_cycle,
               occ, link_busy, active)
        if not fused:
            self._sides[(batch, context)] = hit
        return hit

    def _draft_s(self, b: int, context: float) -> float:
        """Speculative decoding's draft time per step for a micro-batch of ``b`` sequences: each
        drafted token ``draft_layers`` layers of the main model's mean per-layer latency."""
        if self.sd is None:
            return 0.0
        t1 = self.decode(b, context, tokens_per_seq=1)
        per_layer = self._trip(t1, self.hops(b)[0]) / self.shape.layers
        return self.sd.draft_tokens * self.sd.draft_layers * per_layer
