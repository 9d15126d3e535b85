"""Scenario files: deployment, workload, SLO, capacity search, economics, sweep groups."""

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from planner.config.schema.base import (MAX_DEVICES, MAX_TOKENS, PREFILL_CHUNK, Bytes, BytesPerS, Fraction,
                                        Number, Precision, Seconds, Strict, _q)
from planner.config.schema.workload import Workload


class PrecisionChoice(Strict):
    weights: Precision = "bf16"
    kv: Precision | None = None  # default: same as weights, but never below fp8
    mode: Literal["auto", "native", "storage"] = "auto"
    embeddings: Precision = "bf16"


class SpecDecode(Strict):
    """Speculative decoding / multi-token prediction."""

    draft_tokens: Annotated[int, Field(ge=1, le=16)]
    acceptance_rate: Annotated[float, Field(gt=0, lt=1)]  # per drafted token
    draft_layers: Annotated[int, Field(ge=1, le=1000)] = 1  # sequential layers per draft token
    draft_params: Annotated[Number, Field(ge=0)] | None = None  # None: model's own draft head (MTP)


class PrefillPool(Strict):
    """The prefill pool of a disaggregated deployment (its own hardware, sized on its own)."""

    hardware: str  # `plan list hardware` (a GPU, say, in front of wafers)
    count: Annotated[int, Field(ge=1, le=MAX_DEVICES)] | None = None  # devices per prefill replica; None = fewest that fit
    replicas: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # None = sized for the prompt load at slo.ttft_p99_s
    precision: PrecisionChoice | None = None  # None = deployment.precision (the decode pool's)
    software: str | None = None  # a software profile of its hardware spec
    prefill_chunk_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # None = deployment's


class Disaggregated(Strict):
    """Prefill on one pool, decode on another (deployment.hardware), the prompt's KV moved
    between them over the devices' scale-out links (io.bandwidth of each hardware spec)."""

    prefill: PrefillPool


class Deployment(Strict):
    hardware: str = "cs3"
    count: Annotated[int, Field(ge=1, le=MAX_DEVICES)] | None = None  # devices per replica; None = fewest that fit
    replicas: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # None = enough for workload.concurrent_users
    precision: PrecisionChoice = Field(default_factory=PrecisionChoice)
    microbatches: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # None = one per pipeline stage
    spec_decode: SpecDecode | None = None
    prefill_chunk_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = PREFILL_CHUNK  # chunked prefill: tokens per chunk
    # null: every replica prefills and decodes; else the replicas above only decode, behind a prefill pool
    disaggregated: Disaggregated | None = None
    software: str | None = None  # a software profile of the hardware spec (calibrated era)
    # GPUs serving MLA models (DeepSeek): data-parallel attention, each GPU the latent KV of its own
    # sequences (throughput recipes), or tensor-parallel, the latent KV on every GPU of the group
    # (min-latency recipes: faster at small batch, fewer sequences fit). No effect elsewhere
    mla_attention: Literal["dp", "tp"] = "dp"
    # GPUs serving GQA models: tensor-parallel attention (heads and KV heads sharded, KV replicated
    # beyond the KV heads) or data-parallel (each GPU every head for its own sequences: TensorRT-LLM's
    # attention DP / DEP max-throughput recipes for MoE models). No effect elsewhere
    gqa_attention: Literal["tp", "dp"] = "tp"
    router: Literal["round_robin", "least_outstanding", "most_free_kv"] = "least_outstanding"
    kv_policy: Literal["wait", "preempt", "swap", "offload"] = "wait"
    # offload: a sequence whose KV is partly off-chip decodes apart at its reads' pace (separate),
    # or stays in the batch, whose every round then waits for the reads (together)
    offload_batching: Literal["separate", "together"] = "separate"
    max_batch: Annotated[int, Field(ge=1, le=10_000_000)] | None = None  # cap on running sequences per replica
    call_overhead_s: Seconds = 0.0  # agent tasks: per call, client + API service path outside the model
    kv_block_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = 256  # KV allocation granularity


class BondedSramChoice(Strict):
    layers: Annotated[int, Field(ge=0, le=1000)] = 0
    spec: str = "bonded-sram"
    bytes_per_layer: Bytes | None = None
    bandwidth: BytesPerS | None = None


class HardwareOptions(Strict):
    bonded_sram: BondedSramChoice = Field(default_factory=BondedSramChoice)


class Service(Strict):
    """A model behind an API, described by what it does rather than its architecture."""

    name: str = "service"
    decode_tok_s: Annotated[float, Field(gt=0, le=1e9)]  # per-user output speed
    ttft_s: Seconds = 0.0  # time to first token of a call, before prefill of uncached input
    prefill_tok_s: Annotated[float, Field(gt=0, le=1e12)] | None = None  # uncached input speed; None = free
    context_window: Annotated[int, Field(ge=1, le=MAX_TOKENS)]
    usd_per_mtok_in: Annotated[float, Field(ge=0, le=1e9)] = 0.0
    usd_per_mtok_cached_in: Annotated[float, Field(ge=0, le=1e9)] | None = None  # default: usd_per_mtok_in
    usd_per_mtok_out: Annotated[float, Field(ge=0, le=1e9)] = 0.0
    call_overhead_s: Seconds = 0.0  # per call: client + API service path, outside the model (and its TTFT)
    plan_factor: Annotated[float, Field(ge=0.01, le=100)] = 1.0  # this model's turns x this (x agentic.plan_factor)
    source: str = ""


# every SLO target, once: (name = the simulated figure it bounds, sense: +1 an upper bound,
# -1 a lower bound, the analytic estimate's figure for the same quantity)
SLO_TARGETS = (("ttft_p99_s", 1, "ttft_s"), ("tpot_p99_s", 1, "tpot_s"),
               ("decode_tok_s_per_user_p50", -1, "decode_tok_s_per_user"))


class SLO(Strict):
    """Targets on the simulated percentiles; times take units ("3 s", "500 ms"), speeds "50 tok/s".
    TTFT is the engine's time: a serving stack's HTTP, tokenisation and streaming are not in it."""

    ttft_p99_s: Annotated[float, _q("seconds"), Field(gt=0, le=1e7)] | None = None
    tpot_p99_s: Annotated[float, _q("seconds"), Field(gt=0, le=1e7)] | None = None
    decode_tok_s_per_user_p50: Annotated[float, _q("tok_s"), Field(gt=0, le=1e9)] | None = None

    def targets(self) -> list[tuple[str, float, int, str]]:
        """The targets set: (name, target, sense, analytic name), in SLO_TARGETS order."""
        return [(name, getattr(self, name), sense, analytic) for name, sense, analytic in SLO_TARGETS
                if getattr(self, name) is not None]


class Capacity(Strict):
    """Search, per configuration, the highest load one replica carries within the SLO."""

    search: bool = False  # bisection with the engine; needs at least one slo target
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05  # stop when the bracket is this narrow (relative)
    max_probes: Annotated[int, Field(ge=2, le=50)] = 12  # simulations per configuration at most
    stop_at_target: bool = True  # a replica that carries the whole target load needs no further search


class PriceRatio(Strict):
    """How a deployment's $/h is split among token kinds, as API price sheets do (per token,
    relative to a fresh input token). Sheets 2025-26 (vendor pages via llm-prices, 2026-08):
    output 4x (OpenAI gpt-4o/4.1, DeepSeek V3/R1), 5x (Anthropic), 6-8x (gpt-5, Gemini 2.5/3),
    1.3-4x (Groq, DeepSeek V4); cached input 0.1x (Anthropic, Gemini, gpt-5, Mistral), 0.25x
    (DeepSeek V3, gpt-4.1), 0.5x (gpt-4o, Groq), 0.01-0.02x (DeepSeek V4)."""

    output: Annotated[float, Field(gt=0)] = 4.0
    input: Annotated[float, Field(gt=0)] = 1.0
    cached_input: Annotated[float, Field(ge=0)] = 0.1


class Economics(Strict):
    amortisation_years: Annotated[float, Field(ge=0.01, le=100)] = 4.0
    pue: Annotated[float, Field(ge=1, le=5)] = 1.3
    usd_per_kwh: Annotated[float, Field(ge=0, le=100)] = 0.08
    hosting_usd_per_kw_month: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    utilisation: Fraction = 1.0  # share of hours the deployment serves at the modelled rate
    capex: Literal["spec", "low", "high", "rental"] = "spec"
    # splits $/h among output, fresh input, cached input tokens
    price_ratio: PriceRatio = Field(default_factory=PriceRatio)
    # a facility power budget (PUE included, e.g. "100 MW"): each point also reports how many of
    # its replicas fit in it at nameplate power and the tokens/s they serve (README "Power")
    facility_power_cap: Annotated[float, _q("watts"), Field(ge=1e3, le=1e11)] | None = None


def skip_matches(want, value) -> bool:
    """A skip entry's value matches an axis value when equal, or (a list) when any item is."""
    if isinstance(want, list) and not isinstance(value, list):
        return value in want
    return want == value


class SweepGroup(Strict):
    name: str
    mode: Literal["product", "zip"] = "product"
    axes: dict[str, list[Any]] = Field(min_length=1)
    # combinations to drop: each entry maps axes to a value (or a list of values, any of which
    # matches); a combination matching every axis of an entry is skipped
    skip: list[dict[str, Any]] = []

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, v, info):
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values")
        if info.data.get("mode") == "zip" and len({len(vals) for vals in v.values()}) > 1:
            lens = ", ".join(f"{k} {len(vals)}" for k, vals in v.items())
            raise ValueError(f"zip axes must all have the same number of values (got {lens})")
        return v

    def skipped(self, values: dict) -> bool:
        return any(all(skip_matches(want, values[a]) for a, want in rule.items()) for rule in self.skip)


class Scenario(Strict):
    name: str  # the output folder's name: one safe path component
    description: str = ""
    model: Any = None  # a catalog name, a path to a model YAML, or an inline model mapping
    service: Service | None = None  # instead of model + hardware: a model behind an API (agentic only)
    deployment: Deployment = Field(default_factory=Deployment)
    hardware: HardwareOptions = Field(default_factory=HardwareOptions)
    workload: Workload
    slo: SLO = Field(default_factory=SLO)
    economics: Economics = Field(default_factory=Economics)
    capacity: Capacity = Field(default_factory=Capacity)
    seed: Annotated[int, Field(ge=0, le=2 ** 63 - 1)] = 0
    sweep: list[SweepGroup] = []
    reference_group: str | None = None  # speedup.csv compares every point to this group's first point

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", v) or set(v) == {"."}:
            raise ValueError("must be one folder name: 1-100 letters, digits, '_', '.' or '-', not '.' or '..'")
        return v

    @field_validator("sweep")
    @classmethod
    def _unique_groups(cls, v):
        seen: set = set()
        dup = sorted({g.name for g in v if g.name in seen or seen.add(g.name)})  # linear: 20,000 groups
        if dup:
            raise ValueError(f"sweep group names must be unique (repeated: {', '.join(dup)})")
        return v

    @field_validator("model")
    @classmethod
    def _model_form(cls, v):
        if v is not None and not isinstance(v, (str, dict)):
            raise ValueError("model must be a catalog name, a path, or a mapping")
        return v

    @model_validator(mode="after")
    def _model_or_service(self):
        if self.model is None and self.service is None:
            raise ValueError("give a model (an architecture to simulate on hardware) or a service "
                             "(a model behind an API; it takes precedence over model)")
        if self.service is not None and self.workload.agentic is None:
            raise ValueError("a service is simulated with agentic sessions only (set workload.agentic)")
        return self

    @classmethod
    def sweep_only(cls, data) -> "Scenario | None":
        """A Scenario holding only ``data``'s sweep groups (the rest unvalidated defaults), or None
        when they are absent or invalid: a file whose base has problems still has every sweep
        point checked, so one run lists the axes' problems beside the base's."""
        raw = data.get("sweep") if isinstance(data, dict) else None
        if not raw or not isinstance(raw, list):
            return None
        groups = []
        for g in raw:  # a group with problems of its own stands in empty (no points), so the
            try:       # others keep their indices (and so their lines)
                groups.append(SweepGroup.model_validate(g))
            except ValidationError:
                name = g.get("name") if isinstance(g, dict) else None
                groups.append(SweepGroup.model_construct(name=name if isinstance(name, str) else None,
                                                         axes={}, skip=[], mode="product"))
        return cls.model_construct(sweep=groups)
