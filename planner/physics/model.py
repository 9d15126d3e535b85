"""Model shapes -> per-layer parameter counts, KV bytes per token and FLOPs per token.

Why per layer: placement cuts the layer stack into contiguous stages, so every figure is
an array indexed by layer (dense and MoE layers differ; sliding-window layers cap their KV).
Formulas (biases and norms ignored, < 0.1% of weights):
- GQA attention params: hidden*heads*hd (q) + 2*hidden*kv*hd (k, v) + heads*hd*hidden (o);
  KV elements/token = 2*kv*hd.
- MLA: hidden*q_lora + q_lora*heads*(nope+rope) + hidden*(kv_lora+rope)
  + kv_lora*heads*(nope+v) + heads*v*hidden; KV elements/token = kv_lora + rope.
- SwiGLU MLP: 3*hidden*intermediate; MoE layer: (experts+shared)*3*hidden*moe_inter + router.
- Decode attention FLOPs per past token: GQA 4*heads*hd; MLA (absorbed) 2*heads*(2*kv_lora+rope).
  Prefill MLA uses the MHA form: 2*heads*(nope+rope+v).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from planner.config.schema import ModelSpec

# bytes per stored element; block-scaled 4-bit formats carry their scale overhead
PRECISION_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "fp4": 0.5, "mxfp4": 4.25 / 8, "nvfp4": 4.5 / 8}
# which compute rate a precision uses when it runs natively
COMPUTE_CLASS = {"fp16": "fp16", "bf16": "fp16", "fp8": "fp8", "fp4": "fp4", "mxfp4": "fp4", "nvfp4": "fp4"}


def sum_min(a: float, b: float, w):
    """sum_{i=a+1}^{b} min(i, w): attended tokens summed over positions a+1..b.

    ``w`` may be an array of caps (0 or inf = no cap); closed form, no loop over positions."""
    scalar = not isinstance(w, np.ndarray) or w.ndim == 0
    if b <= a:
        return 0.0 if scalar else np.zeros_like(w, dtype=float)
    full = (a + 1 + b) * (b - a) / 2.0
    if scalar and w <= 0:  # no cap (the same figure the general form gives, without it)
        return float(full)
    w = np.where(np.asarray(w, dtype=float) <= 0, np.inf, w)
    capped_all = w * (b - a)
    wc = np.clip(w, a + 1, b)  # finite where it matters: w >= b takes the ``full`` branch
    partial = (a + 1 + wc) * (wc - a) / 2.0 + wc * (b - wc)
    out = np.where(w >= b, full, np.where(w <= a + 1, capped_all, partial))
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class ModelShape:
    """Arrays over layers derived once from a :class:`ModelSpec`."""

    spec: ModelSpec
    fixed_params: np.ndarray  # per layer: attention + dense MLP + shared experts + router
    expert_params: np.ndarray  # per layer: all routed experts (resident, few active)
    experts: int  # routed experts per MoE layer (0 for dense)
    active_experts: int
    kv_elems: np.ndarray  # per layer: KV elements per token (times the KV precision's bytes)
    kv_fixed_bytes: np.ndarray  # per layer: bytes per token stored at a fixed precision (DSA indexer keys)
    window: np.ndarray  # per layer: KV/attention cap in tokens (0 = none)
    attn_decode_flops: np.ndarray  # per layer, per attended past token, one query token
    attn_prefill_flops: np.ndarray
    indexer_flops: np.ndarray  # per layer, per past token (scans everything)
    attend_cap: np.ndarray  # per layer: attended tokens cap (window or DSA top-k; 0 = none)
    embed_params: float  # input embedding table
    head_params: float  # lm head (0 extra params if tied, but still computed)
    attn_params: np.ndarray | None = None  # per layer: attention's weights (part of fixed; coarse: unknown)

    @property
    def layers(self) -> int:
        return len(self.fixed_params)

    @cached_property
    def layer_params(self) -> np.ndarray:
        return self.fixed_params + self.expert_params

    @cached_property
    def layer_active_params(self) -> np.ndarray:
        frac = self.active_experts / self.experts if self.experts else 0.0
        return self.fixed_params + self.expert_params * frac

    @property
    def total_params(self) -> float:
        head = 0.0 if self.spec.tie_embeddings else self.head_params
        return float(self.layer_params.sum() + self.embed_params + head)

    @property
    def active_params(self) -> float:
        """Parameters touched per token (input embedding lookup excluded, lm head included)."""
        return float(self.layer_active_params.sum() + self.head_params)

    def weight_bytes(self, precision: str, embeddings: str = "bf16") -> tuple[np.ndarray, float, float]:
        """(per-layer bytes, embedding bytes, lm-head bytes) at the given precisions."""
        wb, eb = PRECISION_BYTES[precision], PRECISION_BYTES[embeddings]
        head = 0.0 if self.spec.tie_embeddings else self.head_params * eb
        return self.layer_params * wb, self.embed_params * eb, head

    def kv_bytes_per_token(self, kv_precision: str) -> np.ndarray:
        """Per layer, uncapped (each token's own KV entry)."""
        return self.kv_elems * PRECISION_BYTES[kv_precision] + self.kv_fixed_bytes

    def held_tokens(self, context: float) -> np.ndarray:
        """Per layer: tokens whose KV a sequence holds at ``context`` (a sliding window caps it)."""
        return np.where(self.window > 0, np.minimum(context, self.window), context)

    def kv_bytes_per_sequence(self, kv_precision: str, context: float) -> np.ndarray:
        """Per layer: KV bytes one sequence holds at ``context`` tokens (windows cap it)."""
        return self.kv_bytes_per_token(kv_precision) * self.held_tokens(context)

    def attended(self, context: float) -> np.ndarray:
        return np.where(self.attend_cap > 0, np.minimum(context, self.attend_cap), context)

    @cached_property
    def capped(self) -> bool:
        """Some layer attends to fewer tokens than it has (a window or DSA top-k)."""
        return bool((self.attend_cap > 0).any())

    @cached_property
    def expert_active_params(self) -> np.ndarray:
        """Per layer: routed-expert parameters one token multiplies (top-k of the experts)."""
        frac = self.active_experts / self.experts if self.experts else 0.0
        return self.expert_params * frac

    def decode_flops(self, context: float) -> np.ndarray:
        """Per layer: FLOPs for one new token with ``context`` tokens before it."""
        return 2.0 * self.layer_active_params + self.decode_attn_flops(context)

    def decode_attn_flops(self, context: float) -> np.ndarray:
        """Per layer: the attention part of :meth:`decode_flops` (runs at the KV's precision)."""
        return self.attn_decode_flops * self.attended(context) + self.indexer_flops * context

    def prefill_flops(self, start: float, tokens: float) -> np.ndarray:
        """Per layer: FLOPs to prefill ``tokens`` new tokens after a cached prefix of ``start``."""
        return 2.0 * self.layer_active_params * tokens + self.prefill_attn_flops(start, tokens)

    def prefill_attn_flops(self, start: float, tokens: float) -> np.ndarray:
        """Per layer: the attention part of :meth:`prefill_flops`."""
        end = start + tokens
        full = sum_min(start, end, 0.0)
        attended = sum_min(start, end, self.attend_cap) if self.capped else full
        return self.attn_prefill_flops * attended + self.indexer_flops * full

    @property
    def head_flops(self) -> float:
        return 2.0 * self.head_params


def build(spec: ModelSpec) -> ModelShape:
    """Derive the per-layer arrays from a validated spec (exact shapes or the coarse form)."""
    L, h = spec.layers, spec.hidden
    embed = float(spec.vocab * h)
    if spec.coarse is not None:
        c = spec.coarse
        per_layer = (c.total_params - embed * (1 if spec.tie_embeddings else 2)) / L
        active = (c.active_params - embed) / L  # active counts the lm head, not the embedding lookup
        if per_layer <= 0 or active <= 0 or active > per_layer:
            raise ValueError(f"{spec.name}: coarse sizes inconsistent with vocab x hidden embeddings")
        ones = np.ones(L)
        attn = c.attention_flops_per_context_token / L
        if c.experts:
            # fixed + X = per_layer, fixed + X k/E = active  =>  X = (per_layer - active) / (1 - k/E)
            share = c.experts_active / c.experts
            expert = (per_layer - active) / (1.0 - share) if share < 1 else 0.0  # schema checked share
        else:
            expert = 0.0
        return ModelShape(spec, fixed_params=ones * (per_layer - expert), expert_params=ones * expert,
                          experts=c.experts, active_experts=c.experts_active if c.experts else 0,
                          kv_elems=ones * c.kv_bytes_per_token_16bit / L / 2,
                          kv_fixed_bytes=np.zeros(L), window=np.zeros(L), attn_decode_flops=ones * attn,
                          attn_prefill_flops=ones * attn, indexer_flops=np.zeros(L), attend_cap=np.zeros(L),
                          embed_params=embed, head_params=embed)

    a = spec.attention
    if a.type == "gqa":
        attn_params = h * a.heads * a.head_dim * 2 + 2 * h * a.kv_heads * a.head_dim
        kv_elems = 2 * a.kv_heads * a.head_dim
        dec = pre = 4.0 * a.heads * a.head_dim
    else:
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = (h * a.q_lora_rank + a.q_lora_rank * a.heads * qk) if a.q_lora_rank else h * a.heads * qk
        attn_params = (q + h * (a.kv_lora_rank + a.qk_rope_head_dim)
                       + a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim) + a.heads * a.v_head_dim * h)
        kv_elems = a.kv_lora_rank + a.qk_rope_head_dim
        dec = 2.0 * a.heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
        pre = 2.0 * a.heads * (qk + a.v_head_dim)
    idx_params = idx_flops = idx_bytes = 0.0
    cap = 0
    if a.indexer is not None:
        ix = a.indexer
        qin = a.q_lora_rank or h
        idx_params = qin * ix.heads * ix.head_dim + h * ix.head_dim + h * ix.heads
        idx_flops = 2.0 * ix.heads * ix.head_dim
        idx_bytes = ix.head_dim * ix.key_bytes
        cap = ix.top_k

    window = np.zeros(L)
    if a.local_window is not None:
        pat = a.local_pattern
        window = np.array([a.local_window if pat[i % len(pat)] else 0 for i in range(L)], dtype=float)
    attend_cap = np.where(window > 0, window, cap).astype(float)

    fixed = np.full(L, float(attn_params + idx_params))
    expert = np.zeros(L)
    m = spec.moe
    for i in range(L):
        if m is not None and i >= m.first_dense_layers and (i - m.first_dense_layers) % m.every == m.every - 1:
            one = 3.0 * h * m.intermediate
            fixed[i] += m.shared * one + h * m.experts
            expert[i] = m.experts * one
        else:
            fixed[i] += 3.0 * h * spec.dense_intermediate
    return ModelShape(spec, fixed_params=fixed, expert_params=expert,
                      experts=m.experts if m else 0, active_experts=m.active if m else 0,
                      kv_elems=np.full(L, float(kv_elems)), kv_fixed_bytes=np.full(L, idx_bytes),
                      window=window, attn_decode_flops=np.full(L, dec), attn_prefill_flops=np.full(L, pre),
                      indexer_flops=np.full(L, idx_flops), attend_cap=attend_cap,
                      embed_params=embed, head_params=embed, attn_params=np.full(L, float(attn_params + idx_params)))


def experts_touched(experts: int, active: int, tokens: float) -> float:
    """Expected distinct routed experts hit by ``tokens`` tokens (uniform routing)."""
    if experts == 0 or active == 0:
        return 0.0
    return experts * (1.0 - (1.0 - active / experts) ** max(tokens, 0.0))
