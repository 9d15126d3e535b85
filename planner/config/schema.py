"""Validated shapes of every YAML file: hardware specs, the bonded-SRAM option, models, scenarios.

Why pydantic: unknown keys, wrong types and out-of-range values become precise,
located errors (see :mod:`planner.config.load`); the rest of the code can trust its inputs.
All quantities are SI after validation; YAML may say "44 GB", "150 GB/s", "17 us".
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .. import units


def _q(kind: str):
    return BeforeValidator(lambda v: units.parse(v, kind))


Bytes = Annotated[float, _q("bytes"), Field(gt=0)]
BytesPerS = Annotated[float, _q("bytes_per_s"), Field(gt=0)]
Flops = Annotated[float, _q("flops"), Field(gt=0)]
Seconds = Annotated[float, _q("seconds"), Field(ge=0)]
Watts = Annotated[float, _q("watts"), Field(ge=0)]
Hertz = Annotated[float, _q("hertz"), Field(gt=0)]
Number = Annotated[float, _q("number")]
Fraction = Annotated[float, Field(gt=0, le=1)]

PRECISIONS = ("fp16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4")
Precision = Literal["fp16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4"]
Confidence = Literal["measured", "vendor", "secondary", "estimate", "assumption", "hypothetical", "calibrated"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Sourced(Strict):
    """Every group of numbers says where it came from, so users can argue with it."""

    source: str = Field(min_length=3)
    confidence: Confidence | None = None
    notes: str | None = None


# ---------------------------------------------------------------- hardware
class MemorySpec(Sourced):
    capacity: Bytes  # per device (wafer SRAM, GPU HBM, LPU SRAM)
    bandwidth: BytesPerS  # aggregate, per device
    efficiency: Fraction = 0.8  # achievable fraction of bandwidth in a decode step
    # fraction reached reading routed experts (grouped GEMMs over a few tokens each); None: efficiency
    expert_efficiency: Fraction | None = None
    reserve_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1  # program, activations, fragmentation


class CoreArray(Strict):
    """Dense compute from first principles: cores x SIMD lanes x FLOP per lane-cycle x clock.

    Why: a vendor "AI" peak may count sparsity; what decode and prefill can reach is the dense
    rate. The clock is rarely published, so it carries a range that feeds the uncertainty bands."""

    cores: Annotated[int, Field(ge=1)]
    simd_width: Annotated[int, Field(ge=1)]  # 16-bit lanes per core
    flop_per_lane: Annotated[float, Field(gt=0)] = 2.0  # one fused multiply-add
    clock: Hertz
    clock_low: Hertz | None = None
    clock_high: Hertz | None = None

    @model_validator(mode="after")
    def _range(self):
        lo, hi = self.clock_low or self.clock, self.clock_high or self.clock
        if not lo <= self.clock <= hi:
            raise ValueError(f"need clock_low <= clock <= clock_high (got {lo:g}, {self.clock:g}, {hi:g})")
        return self

    @property
    def fp16_flops(self) -> float:
        return self.cores * self.simd_width * self.flop_per_lane * self.clock


class ComputeSpec(Sourced):
    """Dense peak per device, per *native* precision. A missing precision is not native.

    ``fp16`` is given directly (GPU datasheets' dense figures) or derived from ``cores``
    (wafers); ``claimed_fp16`` keeps a vendor's headline figure as a labelled claim, unused.
    ``fp8_per_fp16`` / ``fp4_per_fp16`` give native low-precision rates relative to 16-bit."""

    fp16: Flops | None = None
    fp8: Flops | None = None
    fp4: Flops | None = None
    cores: CoreArray | None = None
    claimed_fp16: Flops | None = None
    fp8_per_fp16: Annotated[float, Field(gt=0)] | None = None
    fp4_per_fp16: Annotated[float, Field(gt=0)] | None = None
    efficiency: Fraction = 0.5  # achievable fraction of peak in large matmuls (prefill)
    decode_efficiency: Fraction | None = None  # in decode-sized matmuls; None: as ``efficiency``
    # routed-expert (grouped) GEMMs relative to dense ones of the same phase: 1 = as dense
    expert_efficiency: Fraction = 1.0
    # achievable share of each low-precision peak relative to the 16-bit one (scaling overheads,
    # kernels less mature): the datasheet peak stays the claim, this is what the kernels reach
    fp8_achievable: Fraction = 1.0
    fp4_achievable: Fraction = 1.0

    @model_validator(mode="after")
    def _one_source(self):
        if (self.fp16 is None) == (self.cores is None):
            raise ValueError("give either fp16 (a dense peak) or cores (cores x SIMD x clock), not both")
        if self.fp8 is not None and self.fp8_per_fp16 is not None:
            raise ValueError("give fp8 or fp8_per_fp16, not both")
        if self.fp4 is not None and self.fp4_per_fp16 is not None:
            raise ValueError("give fp4 or fp4_per_fp16, not both")
        return self

    def peaks(self, clock_scale: float = 1.0) -> dict[str, float]:
        """Native dense peaks, FLOP/s by compute class (``clock_scale`` for the clock range)."""
        base = (self.fp16 if self.fp16 is not None else self.cores.fp16_flops) * clock_scale
        out = {"fp16": base}
        for cls, abs_, rel in (("fp8", self.fp8, self.fp8_per_fp16), ("fp4", self.fp4, self.fp4_per_fp16)):
            if abs_ is not None:
                out[cls] = abs_ * clock_scale
            elif rel is not None:
                out[cls] = base * rel
        return out

    @property
    def clock_range(self) -> tuple[float, float]:
        """(low, high) compute scale from the clock range (1, 1 when the peak is given)."""
        if self.cores is None:
            return 1.0, 1.0
        c = self.cores
        return (c.clock_low or c.clock) / c.clock, (c.clock_high or c.clock) / c.clock


class LinkSpec(Sourced):
    """Off-device link of one device: wafer Ethernet, GPU scale-out NIC, LPU chip-to-chip."""

    bandwidth: BytesPerS
    latency: Seconds  # one hop, device to device


class ScaleUpSpec(Sourced):
    """GPU tensor-parallel domain (NVLink)."""

    domain_size: Annotated[int, Field(ge=1)]
    bandwidth: BytesPerS  # per GPU, one direction
    # expert-parallel load imbalance: the busiest GPU's routed-expert work over the mean
    # (routing is not uniform and tokens arrive in bursts); 1 = perfectly balanced
    ep_imbalance: Annotated[float, Field(ge=1, le=8)] = 1.0


class LatencySpec(Sourced):
    """Fixed latencies of the step-time model: the handful of names calibration fits."""

    layer_base: Seconds = 0.0  # wafer: per-layer fabric latency, size-independent part
    layer_per_khidden: Seconds = 0.0  # wafer: per-layer latency per 1024 of hidden size
    allreduce: Seconds = 0.0  # GPU: fixed cost of one all-reduce in the TP group
    # GPU: fixed time per layer per step (kernel launches, norms, rotary, synchronisation),
    # dense layers and MoE layers (+ router, top-k, grouped-GEMM set-up, permutes)
    layer_dense: Seconds = 0.0
    layer_moe: Seconds = 0.0
    step_overhead: Seconds = 0.0  # per decode/prefill step: scheduling, sampling, host


class LatencyOverride(Strict):
    layer_base: Seconds | None = None
    layer_per_khidden: Seconds | None = None
    allreduce: Seconds | None = None
    layer_dense: Seconds | None = None
    layer_moe: Seconds | None = None
    step_overhead: Seconds | None = None
    source: str | None = None


class PowerSpec(Sourced):
    watts: Watts  # per system, at the wall (before PUE)


class CostSpec(Sourced):
    capex_usd: Annotated[float, Field(gt=0)]  # per system
    capex_low_usd: Annotated[float, Field(gt=0)] | None = None
    capex_high_usd: Annotated[float, Field(gt=0)] | None = None
    rental_usd_per_h: Annotated[float, Field(gt=0)] | None = None  # per system


class ExternalMemorySpec(Sourced):
    """Memory outside the device reached through its off-device link (swap and KV offload)."""

    capacity: Bytes  # per device
    bandwidth: BytesPerS  # device <-> tier transfer rate per device (a wafer: its off-wafer I/O)


class Uncertainty(Strict):
    """How far this hardware's speed predictions stray from measurements held out of the fit:
    multipliers on per-user speed and throughput (the 10th and 90th percentile of
    measured / predicted). Written by `plan calibrate --write`; hand-set for hypothetical
    hardware (with the reason in ``source``)."""

    speed_low: Annotated[float, Field(gt=0, le=1)]
    speed_high: Annotated[float, Field(ge=1)]
    points: Annotated[int, Field(ge=0)] = 0  # held-out points behind the figures
    median_abs_error: Annotated[float, Field(ge=0)] | None = None
    source: str = Field(min_length=3)


class HardwareSpec(Strict):
    name: str
    kind: Literal["wafer", "gpu"]
    description: str
    hypothetical: bool = False
    extends: str | None = None
    devices_per_system: Annotated[int, Field(ge=1)] = 1
    memory: MemorySpec
    compute: ComputeSpec
    io: LinkSpec
    scale_up: ScaleUpSpec | None = None
    latency: LatencySpec
    power: PowerSpec
    cost: CostSpec
    external_memory: ExternalMemorySpec | None = None
    software_profiles: dict[str, LatencyOverride] = {}
    uncertainty: Uncertainty | None = None

    @model_validator(mode="after")
    def _gpu_has_scale_up(self):
        if self.kind == "gpu" and self.scale_up is None:
            raise ValueError("a gpu spec needs a scale_up section (tensor-parallel domain)")
        return self


class BondedSramSpec(Strict):
    """An SRAM wafer hybrid-bonded on top of a compute wafer (hypothetical option)."""

    name: str
    kind: Literal["bonded_sram"]
    description: str
    hypothetical: bool = True
    extends: str | None = None
    bytes_per_layer: Bytes
    bandwidth: BytesPerS  # vertical, per bonded layer
    capex_usd_per_layer: Annotated[float, Field(ge=0)]
    power_w_per_layer: Watts
    yield_: Fraction = Field(1.0, alias="yield")  # fraction of bonded stacks that work; cost / yield
    max_layers: Annotated[int, Field(ge=0)] = 8
    source: str = Field(min_length=3)
    confidence: Confidence | None = None


# ---------------------------------------------------------------- models
class IndexerSpec(Strict):
    """DeepSeek sparse attention (DSA) lightning indexer: picks top_k past tokens per query."""

    heads: Annotated[int, Field(ge=1)]
    head_dim: Annotated[int, Field(ge=1)]
    top_k: Annotated[int, Field(ge=1)]
    key_bytes: Annotated[float, Field(gt=0)] = 1.0  # indexer keys are stored in FP8


class AttentionSpec(Strict):
    type: Literal["gqa", "mla"]
    heads: Annotated[int, Field(ge=1)]
    kv_heads: Annotated[int, Field(ge=1)] | None = None  # gqa
    head_dim: Annotated[int, Field(ge=1)] | None = None  # gqa
    q_lora_rank: Annotated[int, Field(ge=1)] | None = None  # mla (None: direct q projection)
    kv_lora_rank: Annotated[int, Field(ge=1)] | None = None  # mla
    qk_rope_head_dim: Annotated[int, Field(ge=0)] | None = None  # mla
    qk_nope_head_dim: Annotated[int, Field(ge=1)] | None = None  # mla
    v_head_dim: Annotated[int, Field(ge=1)] | None = None  # mla
    local_window: Annotated[int, Field(ge=1)] | None = None  # sliding/chunked window, tokens
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
    experts: Annotated[int, Field(ge=1)]
    active: Annotated[int, Field(ge=1)]  # routed experts per token
    shared: Annotated[int, Field(ge=0)] = 0
    intermediate: Annotated[int, Field(ge=1)]
    first_dense_layers: Annotated[int, Field(ge=0)] = 0
    every: Annotated[int, Field(ge=1)] = 1  # MoE on every n-th layer after the dense ones

    @model_validator(mode="after")
    def _active_le_experts(self):
        if self.active > self.experts:
            raise ValueError(f"active experts ({self.active}) > experts ({self.experts})")
        return self


class CoarseSpec(Strict):
    """For models whose internals are not public: sizes only, spread evenly over layers."""

    total_params: Annotated[Number, Field(gt=0)]
    active_params: Annotated[Number, Field(gt=0)]
    kv_bytes_per_token_16bit: Annotated[float, Field(gt=0)]
    attention_flops_per_context_token: Annotated[float, Field(ge=0)] = 0.0  # per token, all layers
    # routed experts per layer and experts per token (assumptions when internals are unpublished):
    # so the weights a batch reads grow with the batch; 0 = dense (all parameters active)
    experts: Annotated[int, Field(ge=0)] = 0
    experts_active: Annotated[int, Field(ge=1)] = 1

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
    layers: Annotated[int, Field(ge=1)] = 1


class ModelSpec(Strict):
    name: str
    description: str = ""
    source: str = Field(min_length=3)
    extends: str | None = None
    assumptions: list[str] = []
    layers: Annotated[int, Field(ge=1)]
    hidden: Annotated[int, Field(ge=1)]
    vocab: Annotated[int, Field(ge=1)]
    tie_embeddings: bool = False
    context_window: Annotated[int, Field(ge=1)]
    dense_intermediate: Annotated[int, Field(ge=1)] | None = None
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


# ---------------------------------------------------------------- scenario
class PrecisionChoice(Strict):
    weights: Precision = "bf16"
    kv: Precision | None = None  # default: same as weights, but never below fp8
    mode: Literal["auto", "native", "storage"] = "auto"
    embeddings: Precision = "bf16"


class SpecDecode(Strict):
    """Speculative decoding / multi-token prediction."""

    draft_tokens: Annotated[int, Field(ge=1, le=16)]
    acceptance_rate: Annotated[float, Field(gt=0, lt=1)]  # per drafted token
    draft_layers: Annotated[int, Field(ge=1)] = 1  # sequential layers per draft token
    draft_params: Annotated[Number, Field(ge=0)] | None = None  # None: model's own draft head (MTP)


class Deployment(Strict):
    hardware: str = "cs3"
    count: Annotated[int, Field(ge=1)] | None = None  # devices per replica; None = fewest that fit
    replicas: Annotated[int, Field(ge=1)] | None = None  # None = enough for workload.concurrent_users
    precision: PrecisionChoice = PrecisionChoice()
    microbatches: Annotated[int, Field(ge=1)] | None = None  # None = one per pipeline stage
    spec_decode: SpecDecode | None = None
    prefill_chunk_tokens: Annotated[int, Field(ge=1)] = 2048  # chunked prefill: tokens per chunk
    software: str | None = None  # a software profile of the hardware spec (calibrated era)
    router: Literal["round_robin", "least_outstanding", "most_free_kv"] = "least_outstanding"
    kv_policy: Literal["wait", "preempt", "swap", "offload"] = "wait"
    max_batch: Annotated[int, Field(ge=1)] | None = None  # cap on running sequences per replica
    kv_block_tokens: Annotated[int, Field(ge=1)] = 256  # KV allocation granularity


class BondedSramChoice(Strict):
    layers: Annotated[int, Field(ge=0)] = 0
    spec: str = "bonded-sram"
    bytes_per_layer: Bytes | None = None
    bandwidth: BytesPerS | None = None


class HardwareOptions(Strict):
    bonded_sram: BondedSramChoice = BondedSramChoice()


class LengthDist(Strict):
    """Token counts per request: fixed, uniform, lognormal (median, sigma), exponential (mean;
    drawn as a geometric count >= 1), or empirical (a CSV column, sampled with replacement)."""

    dist: Literal["fixed", "uniform", "lognormal", "exponential", "empirical"]
    value: Annotated[int, Field(ge=1)] | None = None
    low: Annotated[int, Field(ge=1)] | None = None
    high: Annotated[int, Field(ge=1)] | None = None
    median: Annotated[float, Field(gt=0)] | None = None
    sigma: Annotated[float, Field(ge=0)] | None = None
    mean: Annotated[float, Field(ge=1)] | None = None
    file: str | None = None
    column: str | None = None
    max: Annotated[int, Field(ge=1)] | None = None  # clip draws to this

    @model_validator(mode="after")
    def _params(self):
        return _dist_params(self)


def _dist_params(d):
    need = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "sigma"),
            "exponential": ("mean",), "empirical": ("file", "column")}[d.dist]
    missing = [n for n in need if getattr(d, n) is None]
    if missing:
        raise ValueError(f"{d.dist} needs {', '.join(missing)}")
    if d.dist == "uniform" and d.low > d.high:
        raise ValueError(f"low ({d.low}) > high ({d.high})")
    return d


class TimeDist(Strict):
    """Durations in seconds: fixed, uniform, lognormal (median, sigma), exponential (mean), or
    empirical (a CSV column of seconds, sampled with replacement); ``max`` clips draws."""

    dist: Literal["fixed", "uniform", "lognormal", "exponential", "empirical"]
    value: Seconds | None = None
    low: Seconds | None = None
    high: Seconds | None = None
    median: Annotated[float, _q("seconds"), Field(gt=0)] | None = None
    sigma: Annotated[float, Field(ge=0)] | None = None
    mean: Annotated[float, _q("seconds"), Field(gt=0)] | None = None
    file: str | None = None
    column: str | None = None
    max: Annotated[float, _q("seconds"), Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _params(self):
        return _dist_params(self)


class Agentic(Strict):
    """Agent tasks (sessions): turns of append -> prefill -> reply -> tool call, with compaction."""

    tasks: Annotated[int, Field(ge=1)] = 100  # tasks to simulate
    agents: Annotated[int, Field(ge=1)] | None = None  # agents running tasks back to back (default 1) ...
    rate_per_s: Annotated[float, Field(gt=0)] | None = None  # ... or tasks arriving as a Poisson process
    turns: LengthDist = LengthDist(dist="fixed", value=30)  # model calls per task (compactions extra)
    first_prompt_tokens: LengthDist = LengthDist(dist="fixed", value=8000)  # system prompt + task
    append_tokens: LengthDist = LengthDist(dist="lognormal", median=2000, sigma=0.8)  # tool output per turn
    reply_tokens: LengthDist = LengthDist(dist="lognormal", median=350, sigma=0.6)  # model output per turn
    tool_s: TimeDist = TimeDist(dist="lognormal", median=1.9, sigma=0.5)  # CPU time between turns
    context_window: Annotated[int, Field(ge=1)] | None = None  # default: the model's (or the service's)
    compact_at: Annotated[float, Field(gt=0, le=1)] = 0.835  # share of the window that triggers compaction
    summary_tokens: Annotated[int, Field(ge=1)] = 4000  # the compaction call's output
    reread_tokens: Annotated[int, Field(ge=0)] = 8000  # recent material read again after compaction
    compaction_prompt_tokens: Annotated[int, Field(ge=1)] = 256  # the "summarise" instruction
    kv_between_turns: Literal["keep", "drop", "offload"] = "keep"  # the session's KV during a tool call

    @model_validator(mode="after")
    def _arrivals(self):
        if self.rate_per_s is not None and self.agents is not None:
            raise ValueError("give agents (tasks back to back) or rate_per_s (Poisson task arrivals), not both")
        if self.summary_tokens + self.reread_tokens >= (self.context_window or 10 ** 12) * self.compact_at:
            raise ValueError("summary_tokens + reread_tokens must stay below compact_at x context_window")
        return self


class Service(Strict):
    """A model behind an API, described by what it does rather than its architecture."""

    name: str = "service"
    decode_tok_s: Annotated[float, Field(gt=0)]  # per-user output speed
    ttft_s: Seconds = 0.0  # time to first token of a call, before prefill of uncached input
    prefill_tok_s: Annotated[float, Field(gt=0)] | None = None  # uncached input speed; None = free
    context_window: Annotated[int, Field(ge=1)]
    usd_per_mtok_in: Annotated[float, Field(ge=0)] = 0.0
    usd_per_mtok_cached_in: Annotated[float, Field(ge=0)] | None = None  # default: usd_per_mtok_in
    usd_per_mtok_out: Annotated[float, Field(ge=0)] = 0.0
    source: str = ""


class Arrival(Strict):
    """How requests arrive. ``closed``: ``users`` each send a request, wait for it, think, repeat."""

    process: Literal["poisson", "gamma", "constant", "trace", "closed"] = "poisson"
    rate_per_s: Annotated[float, Field(gt=0)] | None = None
    load: Annotated[float, Field(gt=0, le=10)] | None = None  # rate as a share of the analytic capacity
    cv: Annotated[float, Field(gt=0)] = 1.0  # gamma: coefficient of variation of inter-arrival times
    trace: str | None = None  # CSV with arrival_s,prompt_tokens,output_tokens
    users: Annotated[int, Field(ge=1)] | None = None  # closed: default workload.concurrent_users
    think_s: Seconds = 0.0  # closed: pause between a reply and the next request

    @model_validator(mode="after")
    def _needs(self):
        if self.process in ("poisson", "gamma", "constant"):
            if (self.rate_per_s is None) == (self.load is None):
                raise ValueError(f"{self.process} arrivals need exactly one of rate_per_s or load")
        if self.process == "trace" and not self.trace:
            raise ValueError("trace arrivals need trace: FILE.csv")
        return self


class Workload(Strict):
    context_tokens: Annotated[int, Field(ge=1)] | None = None  # KV sized for this (default prompt+output)
    prompt_tokens: Annotated[int, Field(ge=1)] | None = None  # default context - output
    output_tokens: Annotated[int, Field(ge=1)] = 1024
    concurrent_users: Annotated[int, Field(ge=1)] | None = None  # None = one replica at full KV
    simulate: bool = True  # run the discrete-event engine on every feasible point (False: analytic only)
    arrival: Arrival | None = None  # None: closed loop of concurrent_users, else Poisson at load 0.7
    prompt_dist: LengthDist | None = None  # simulation only; default fixed at the prompt length
    output_dist: LengthDist | None = None  # simulation only; default fixed at output_tokens
    requests: Annotated[int, Field(ge=1)] | None = None  # to simulate; None = max(2000, 3 x closed-loop users)
    agentic: Agentic | None = None  # agent tasks instead of independent requests (arrival ignored)
    warmup_fraction: Annotated[float, Field(ge=0, lt=0.9)] = 0.1  # first share excluded from latency stats

    @model_validator(mode="after")
    def _lengths(self):
        if self.context_tokens is None and self.prompt_tokens is None:
            raise ValueError("give context_tokens or prompt_tokens")
        if self.context_tokens is not None and self.prompt_tokens is not None and \
                self.prompt_tokens + self.output_tokens > self.context_tokens:
            raise ValueError(f"prompt_tokens + output_tokens ({self.prompt_tokens + self.output_tokens}) "
                             f"> context_tokens ({self.context_tokens})")
        if self.context_tokens is not None and self.prompt_tokens is None and \
                self.output_tokens >= self.context_tokens:
            raise ValueError(f"output_tokens ({self.output_tokens}) must be < context_tokens ({self.context_tokens})")
        return self

    @property
    def context(self) -> int:
        return self.context_tokens if self.context_tokens is not None else self.prompt_tokens + self.output_tokens

    @property
    def prompt(self) -> int:
        return self.prompt_tokens if self.prompt_tokens is not None else self.context - self.output_tokens


class SLO(Strict):
    ttft_p99_s: Annotated[float, Field(gt=0)] | None = None
    tpot_p99_s: Annotated[float, Field(gt=0)] | None = None
    decode_tok_s_per_user_p50: Annotated[float, Field(gt=0)] | None = None


class Capacity(Strict):
    """Search, per configuration, the highest load one replica carries within the SLO."""

    search: bool = False  # bisection with the engine; needs at least one slo target
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05  # stop when the bracket is this narrow (relative)
    max_probes: Annotated[int, Field(ge=2, le=50)] = 12  # simulations per configuration at most
    stop_at_target: bool = True  # a replica that carries the whole target load needs no further search


class Economics(Strict):
    amortisation_years: Annotated[float, Field(gt=0)] = 4.0
    pue: Annotated[float, Field(ge=1)] = 1.3
    usd_per_kwh: Annotated[float, Field(ge=0)] = 0.08
    hosting_usd_per_kw_month: Annotated[float, Field(ge=0)] = 0.0
    utilisation: Fraction = 1.0  # share of hours the deployment serves at the modelled rate
    capex: Literal["spec", "low", "high", "rental"] = "spec"


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
    def _non_empty(cls, v):
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values")
        return v

    def skipped(self, values: dict) -> bool:
        return any(all(skip_matches(want, values[a]) for a, want in rule.items()) for rule in self.skip)

    @model_validator(mode="after")
    def _zip_lengths(self):
        if self.mode == "zip" and len({len(v) for v in self.axes.values()}) > 1:
            raise ValueError("zip axes must all have the same number of values")
        return self


class Scenario(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    model: Any = None  # a catalog name, a path to a model YAML, or an inline model mapping
    service: Service | None = None  # instead of model + hardware: a model behind an API (agentic only)
    deployment: Deployment = Deployment()
    hardware: HardwareOptions = HardwareOptions()
    workload: Workload
    slo: SLO = SLO()
    economics: Economics = Economics()
    capacity: Capacity = Capacity()
    seed: Annotated[int, Field(ge=0)] = 0
    sweep: list[SweepGroup] = []
    reference_group: str | None = None  # speedup.csv compares every point to this group's first point

    @field_validator("sweep")
    @classmethod
    def _unique_groups(cls, v):
        names = [g.name for g in v]
        dup = sorted({n for n in names if names.count(n) > 1})
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
