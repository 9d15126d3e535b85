"""Model spec files (planner/catalog/models/*.yaml): shape, attention, experts, draft head."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from planner.config.schema.base import MAX_TOKENS, Number, Strict


class IndexerSpec(Strict):
    """DeepSeek sparse attention (DSA) lightning indexer: picks top_k past tokens per query."""

    heads: Annotated[int, Field(ge=1, le=100_000)]
    head_dim: Annotated[int, Field(ge=1, le=100_000)]
    top_k: Annotated[int, Field(ge=1, le=MAX_TOKENS)]
    key_bytes: Annotated[float, Field(gt=0, le=16)] = 1.0  # indexer keys are stored in FP8


class AttentionSpec(Strict):
    type: Literal["gqa", "mla"]
    heads: Annotated[int, Field(ge=1, le=100_000)]
    kv_heads: Annotated[int, Field(ge=1, le=100_000)] | None = None  # gqa
    head_dim: Annotated[int, Field(ge=1, le=100_000)] | None = None  # gqa
    q_lora_rank: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # mla (None: direct q projection)
    kv_lora_rank: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # mla
    qk_rope_head_dim: Annotated[int, Field(ge=0, le=100_000)] | None = None  # mla
    qk_nope_head_dim: Annotated[int, Field(ge=1, le=100_000)] | None = None  # mla
    v_head_dim: Annotated[int, Field(ge=1, le=100_000)] | None = None  # mla
    local_window: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # sliding/chunked window, tokens
    local_pattern: list[Literal[0, 1]] | None = None  # repeating per layer: 1 = local, 0 = global
    indexer: IndexerSpec | None = None

    @model_validator(mode="after")
    def _complete(self):
        need = ("kv_heads", "head_dim") if self.type == "gqa" else (
            "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{self.type} attention needs {', '.join(missing)}")
        if (self.local_window is None) != (self.local_pattern is None):
            raise ValueError("local_window and local_pattern go together")
        return self


class MoESpec(Strict):
    experts: Annotated[int, Field(ge=1, le=100_000)]
    active: Annotated[int, Field(ge=1, le=100_000)]  # routed experts per token
    shared: Annotated[int, Field(ge=0, le=100_000)] = 0
    intermediate: Annotated[int, Field(ge=1, le=10_000_000)]
    first_dense_layers: Annotated[int, Field(ge=0, le=100_000)] = 0
    every: Annotated[int, Field(ge=1, le=100_000)] = 1  # MoE on every n-th layer after the dense ones

    @model_validator(mode="after")
    def _active_le_experts(self):
        if self.active > self.experts:
            raise ValueError(f"active experts ({self.active}) > experts ({self.experts})")
        return self


class CoarseSpec(Strict):
    """For models whose internals are not public: sizes only, spread evenly over layers."""

    total_params: Annotated[Number, Field(gt=0)]
    active_params: Annotated[Number, Field(gt=0)]
    kv_bytes_per_token_16bit: Annotated[float, Field(gt=0, le=1e12)]
    attention_flops_per_context_token: Annotated[float, Field(ge=0, le=1e18)] = 0.0  # per token, all layers
    # routed experts per layer and experts per token (assumptions when internals are unpublished):
    # so the weights a batch reads grow with the batch; 0 = dense (all parameters active)
    experts: Annotated[int, Field(ge=0, le=100_000)] = 0
    experts_active: Annotated[int, Field(ge=1, le=100_000)] = 1

    @model_validator(mode="after")
    def _experts(self):
        if self.experts and self.experts_active > self.experts:
            raise ValueError(f"experts_active ({self.experts_active}) > experts ({self.experts})")
        if not self.experts and self.active_params < self.total_params:
            raise ValueError("active_params < total_params needs experts and experts_active (a MoE model)")
        return self


class DraftSpec(Strict):
    """A built-in draft head (DeepSeek MTP): resident only when speculative decoding uses it."""

    params: Annotated[Number, Field(gt=0)]
    layers: Annotated[int, Field(ge=1, le=100_000)] = 1


class ModelSpec(Strict):
    name: str
    description: str = ""
    source: str = Field(min_length=3)
    extends: str | None = None
    aliases: list[str] = []  # Hugging Face ids (org/name) this spec reproduces; found by catalog lookups
    assumptions: list[str] = []
    layers: Annotated[int, Field(ge=1, le=100_000)]
    hidden: Annotated[int, Field(ge=1, le=10_000_000)]
    vocab: Annotated[int, Field(ge=1, le=100_000_000)]
    tie_embeddings: bool = False
    context_window: Annotated[int, Field(ge=1, le=MAX_TOKENS)]
    dense_intermediate: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    attention: AttentionSpec | None = None
    moe: MoESpec | None = None
    coarse: CoarseSpec | None = None
    draft: DraftSpec | None = None

    @model_validator(mode="after")
    def _one_form(self):
        if self.coarse is None:
            if self.attention is None:
                raise ValueError("give either attention (+ dense_intermediate/moe) or coarse")
            if self.moe is None and self.dense_intermediate is None:
                raise ValueError("a dense model needs dense_intermediate")
            if self.moe is not None and self.dense_intermediate is None and (
                    self.moe.first_dense_layers > 0 or self.moe.every > 1):
                raise ValueError("moe.first_dense_layers/every need dense_intermediate for the dense layers")
        elif self.attention is not None or self.moe is not None:
            raise ValueError("coarse models take no attention/moe section")
        elif self.coarse.experts:
            embed = self.vocab * self.hidden
            per_layer = self.coarse.total_params - embed * (1 if self.tie_embeddings else 2)
            active = self.coarse.active_params - embed
            share = self.coarse.experts_active / self.coarse.experts
            if per_layer > 0 and active / per_layer < share:
                raise ValueError(f"coarse: active share of layer parameters {active / per_layer:.4f} is below the "
                                 f"experts' {share:.4f} (experts_active / experts): lower experts_active or "
                                 f"raise experts")
        return self
