"""Map a model onto devices: contiguous pipeline stages, KV budget, maximum concurrency.

Wafers (and SRAM chips): the layer stack, with the KV of every resident sequence, is cut
into ``count`` contiguous stages of equal bytes, one per device. A cut may fall inside a
layer (its experts or heads split over two devices, which is how a 22 GB MoE layer or a
layer larger than a whole wafer is held); each such cut makes the hop carry one more
hidden vector per token (the partial sum), charged by the step-time model.
So with W weight bytes, K KV bytes per sequence and usable capacity C per device:
  devices for one sequence = ceil((W + K) / C);  max concurrency N = floor((count*C - W) / K).
A prefix of P tokens shared by every request (workload.prefix shared) is held once per replica:
its KV, Ks = kv(P), sits next to the weights, and each sequence holds only the rest of its
context, K = kv(context - P) (a windowed layer: min(context - P, window), the tokens it attends
past the prefix), so N = floor((count*C - W - Ks) / kv(context - P)).
GPUs: tensor parallel inside the scale-up domain (TP = min(count, domain)), pipeline across
domains (PP = count / TP); weights and experts shard evenly (expert parallel); GQA KV shards
over KV heads and is replicated beyond them; MLA KV is sharded by sequence (data-parallel
attention, as SGLang/vLLM serve DeepSeek); a shared prefix is replicated as the KV is (MLA
data-parallel attention: on every GPU of the group, each serving its own sequences).
GQA models may run data-parallel attention too (``gqa_attention="dp"``, the recipes
TensorRT-LLM calls attention DP / DEP for MoE models): their KV then shards by sequence with
every KV head, as MLA's, and no query heads need dividing.
Data-parallel attention also puts a whole copy of the attention weights on every GPU of the
group (each runs every head for its own sequences): TP x the attention bytes are resident,
and each GPU reads its whole copy every step (the step model reads a stage's resident bytes
over its GPUs, so the copies cost exactly that).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.physics.hardware import Device, Infeasible
from planner.physics.model import PRECISION_BYTES, ModelShape
from planner.config.units import fmt_bytes


@dataclass(frozen=True)
class Stage:
    start: float  # in layer units: 2.5 = halfway through layer 2
    end: float
    devices: int  # devices working on the stage together (the TP group on GPUs; 1 on wafers)
    weight_bytes: float  # resident weights of the stage (all its devices)
    kv_bytes_per_seq: float  # KV one sequence holds here at the sizing context (beyond a shared prefix)
    holds_head: bool
    shared_kv_bytes: float = 0.0  # KV of the shared prefix held here (once, replication included)

    def fractions(self, n_layers: int) -> np.ndarray:
        """Share of each layer that this stage holds."""
        idx = np.arange(n_layers)
        return np.clip(np.minimum(idx + 1, self.end) - np.maximum(idx, self.start), 0.0, 1.0)

    @property
    def ends_mid_layer(self) -> bool:
        return abs(self.end - round(self.end)) > 1e-9


@dataclass(frozen=True)
class Placement:
    kind: str
    devices: int  # per replica
    stages: tuple[Stage, ...]
    weight_bytes: float  # whole model as resident (embeddings, head, draft head included)
    kv_bytes_per_seq: float  # at the sizing context (beyond a shared prefix), whole model, before replication
    kv_bytes_per_token: float  # kv_bytes_per_seq / its tokens (sliding windows make it context-dependent)
    max_concurrent: int  # sequences per replica at the sizing context
    capacity_bytes: float  # usable per device
    context: int
    tp: int = 1
    kv_replication: float = 1.0
    dp_attention: bool = False  # GPUs: attention data parallel (each GPU its own sequences, every head)
    shared_tokens: int = 0  # a prefix shared by every sequence, held once
    shared_kv_bytes: float = 0.0  # its KV, replication included

    @property
    def layers_split(self) -> int:
        return sum(1 for s in self.stages[:-1] if s.ends_mid_layer)


def resident_bytes(shape: ModelShape, weight_precision: str, emb_precision: str, kv_precision: str,
                   context: int, draft_params: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer resident weight bytes and per-sequence KV bytes. Embeddings ride on the first
    layer, the lm head and any draft (MTP) head on the last: they live on the first/last stage."""
    w, emb, head = shape.weight_bytes(weight_precision, emb_precision)
    w = w.copy()
    w[0] += emb
    w[-1] += head + draft_params * PRECISION_BYTES[weight_precision]
    return w, shape.kv_bytes_per_sequence(kv_precision, context)


def _cut(cost: np.ndarray, parts: int) -> list[tuple[float, float]]:
    """``parts`` contiguous intervals (layer units) of equal total cost."""
    cum = np.concatenate([[0.0], np.cumsum(cost)])
    pos = np.interp(cum[-1] * np.arange(parts + 1) / parts, cum, np.arange(len(cost) + 1, dtype=float))
    pos[0], pos[-1] = 0.0, float(len(cost))
    return [(float(pos[i]), float(pos[i + 1])) for i in range(parts)]


def _stages(w: np.ndarray, kv: np.ndarray, n: int, parts: int, devices_each: int,
            shared: np.ndarray | float = 0.0) -> tuple[Stage, ...]:
    out = []
    for a, b in _cut(w + shared + n * kv, parts):
        st = Stage(a, b, devices_each, 0.0, 0.0, b >= len(w) - 1e-9)
        f = st.fractions(len(w))
        out.append(Stage(a, b, devices_each, float(f @ w), float(f @ kv), st.holds_head,
                         float(f @ (shared * np.ones(len(w))))))
    return tuple(out)


def place_wafer(shape: ModelShape, dev: Device, count: int | None, w: np.ndarray, kv: np.ndarray,
                context: int, max_devices: int, min_sequences: int = 1, shared: np.ndarray | None = None,
                shared_tokens: int = 0) -> Placement:
    sh = shared if shared is not None else np.zeros(len(w))
    cap, W, K, S = dev.capacity_bytes, float(w.sum()), float(kv.sum()), float(sh.sum())
    if count is None:
        count = math.ceil((W + S + min_sequences * K) / cap - 1e-12)
        if count > max_devices:
            raise Infeasible(f"needs {count} x {dev.name} for {min_sequences} sequences of {context} tokens "
                             f"(> {max_devices})", "capacity")
    if W > count * cap:
        raise Infeasible(f"weights do not fit: {fmt_bytes(W)} > {count} x {fmt_bytes(cap)} usable on {dev.name} "
                         f"(needs {math.ceil(W / cap)})", "capacity")
    n = int((count * cap - W - S) // K)
    if n < 1:
        raise Infeasible(f"KV of one {context}-token sequence ({fmt_bytes(K)}) does not fit next to the weights "
                         f"{'and the shared prefix ' if S else ''}on {count} x {dev.name} "
                         f"(needs {math.ceil((W + S + K) / cap)})", "capacity")
    return Placement("wafer", count, _stages(w, kv, n, count, 1, sh), W, K, K / (context - shared_tokens), n, cap, context,
                     shared_tokens=shared_tokens, shared_kv_bytes=S)


def data_parallel_attention(attention, mla_attention: str, gqa_attention: str) -> bool:
    """Whether a GPU group runs this attention data parallel: the knob of its kind (MLA's
    ``mla_attention``, GQA's ``gqa_attention``) says ``dp``; no attention, no."""
    return attention is not None and (mla_attention if attention.type == "mla" else gqa_attention) == "dp"


def place_gpu(shape: ModelShape, dev: Device, count: int | None, w: np.ndarray, kv: np.ndarray,
              context: int, max_devices: int, min_sequences: int = 1, mla_attention: str = "dp",
              shared: np.ndarray | None = None, shared_tokens: int = 0,
              attn: np.ndarray | None = None, gqa_attention: str = "tp") -> Placement:
    """``attn``: per-layer attention weight bytes, copied to every GPU of the group under
    data-parallel attention (MLA's ``mla_attention``, GQA's ``gqa_attention``)."""
    a = shape.spec.attention
    dp = data_parallel_attention(a, mla_attention, gqa_attention)
    # KV heads to shard over: GQA's under tensor-parallel attention; MLA's one latent head (every
    # GPU then holds the whole latent KV); data-parallel attention shards by sequence instead
    gqa_heads = None if a is None or dp else a.kv_heads if a.type == "gqa" else 1
    # tensor-parallel attention shards whole query heads (engines require heads % TP == 0);
    # data-parallel attention shards sequences instead: no heads to divide
    heads = a.heads if a is not None and not dp else None
    sh = shared if shared is not None else np.zeros(len(w))
    copied = attn if attn is not None and dp else np.zeros(len(w))  # one more copy per further GPU of the group
    cap, K, S = dev.capacity_bytes, float(kv.sum()), float(sh.sum())

    def resident(n: int) -> np.ndarray:
        """Per-layer weight bytes on n GPUs: the model once, the copied attention (TP - 1) more times."""
        return w + copied * (degree(n) - 1)

    def degree(n: int) -> int:
        """The TP degree on n GPUs: the largest within the NVLink domain that divides n (the rest
        becomes pipeline stages) and, with tensor-parallel attention, the query heads, with the
        KV heads sharded whole or replicated whole (engines' rule)."""
        kvh = a.kv_heads if heads and a.type == "gqa" and a.kv_heads else None
        return max(d for d in range(1, min(n, dev.scale_up_domain) + 1) if n % d == 0
                   and (not heads or heads % d == 0) and (not kvh or kvh % d == 0 or d % kvh == 0))

    def copies(n: int) -> tuple[float, float]:
        """(KV replication, shared prefix's copies): a data-parallel rank serves its own sequences,
        so each holds the shared prefix."""
        tp = degree(n)
        repl = max(1.0, tp / gqa_heads) if gqa_heads else 1.0
        return repl, (float(tp) if dp else repl)

    def concurrency(n: int) -> tuple[int, float]:
        repl, sh_copies = copies(n)
        free = cap * n - float(resident(n).sum()) - S * sh_copies
        return (int(free // (K * repl)) if free > 0 else 0), repl

    if count is None:
        sizes = sorted({1, 2, 4, 8, *range(dev.scale_up_domain, max_devices + 1, dev.scale_up_domain)})
        count = next((n for n in sizes if n <= max_devices and concurrency(n)[0] >= min_sequences), None)
        if count is None:
            raise Infeasible(f"{min_sequences} sequences of {context} tokens do not fit on "
                             f"{max_devices} x {dev.name}", "capacity")
    tp = degree(count)
    wc = resident(count)
    W = float(wc.sum())
    if W > count * cap:
        raise Infeasible(f"weights do not fit: {fmt_bytes(W)} > {count} x {fmt_bytes(cap)} usable on {dev.name}",
                         "capacity")
    n, repl = concurrency(count)
    if n < 1:
        raise Infeasible(f"KV of one {context}-token sequence does not fit next to the weights "
                         f"{'and the shared prefix ' if S else ''}on {count} x {dev.name}", "capacity")
    sh_copies = copies(count)[1]
    return Placement("gpu", count, _stages(wc, kv, n, count // tp, tp, sh * sh_copies), W, K, K / (context - shared_tokens), n, cap,
                     context, tp=tp, kv_replication=repl, dp_attention=dp,
                     shared_tokens=shared_tokens, shared_kv_bytes=S * sh_copies)


def place(shape: ModelShape, dev: Device, count: int | None, weight_precision: str, kv_precision: str,
          context: int, emb_precision: str = "bf16", draft_params: float = 0.0,
          max_devices: int = 4096, min_sequences: int = 1, mla_attention: str = "dp",
          shared_tokens: int = 0, gqa_attention: str = "tp") -> Placement:
    """Fit ``shape`` on ``count`` devices (None: the fewest that hold ``min_sequences``
    sequences of ``context`` tokens, the first ``shared_tokens`` of them a prefix held once), or
    raise Infeasible."""
    w, kv = resident_bytes(shape, weight_precision, emb_precision, kv_precision, context - shared_tokens,
                           draft_params)
    shared = shape.kv_bytes_per_sequence(kv_precision, shared_tokens) if shared_tokens else None
    if dev.kind == "wafer":
        return place_wafer(shape, dev, count, w, kv, context, max_devices, min_sequences, shared, shared_tokens)
    attn = None if shape.attn_params is None else shape.attn_params * PRECISION_BYTES[weight_precision]
    return place_gpu(shape, dev, count, w, kv, context, max_devices, min_sequences, mla_attention, shared,
                     shared_tokens, attn, gqa_attention)
