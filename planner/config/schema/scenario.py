"""Scenario files: deployment, workload, SLO, capacity search, economics, sweep groups."""

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from planner.config.schema.base import (MAX_DEVICES, MAX_REQUESTS, MAX_TOKENS, PREFILL_CHUNK, Bytes, BytesPerS,
                                        Fraction, Number, Precision, Seconds, Strict, _q)


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


class LengthDist(Strict):
    """Token counts per request: fixed, uniform, lognormal (median, sigma), exponential (mean;
    drawn as a geometric count >= 1), or empirical (a CSV column, sampled with replacement)."""

    dist: Literal["fixed", "uniform", "lognormal", "exponential", "empirical"]
    value: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    low: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    high: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    median: Annotated[float, Field(gt=0, le=MAX_TOKENS)] | None = None
    sigma: Annotated[float, Field(ge=0, le=5)] | None = None
    mean: Annotated[float, Field(ge=1, le=MAX_TOKENS)] | None = None
    file: str | None = None
    column: str | None = None
    max: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # clip draws to this

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
    median: Annotated[float, _q("seconds"), Field(gt=0, le=1e7)] | None = None
    sigma: Annotated[float, Field(ge=0, le=5)] | None = None
    mean: Annotated[float, _q("seconds"), Field(gt=0, le=1e7)] | None = None
    file: str | None = None
    column: str | None = None
    max: Annotated[float, _q("seconds"), Field(gt=0, le=1e7)] | None = None

    @model_validator(mode="after")
    def _params(self):
        return _dist_params(self)


class Agentic(Strict):
    """Agent tasks (sessions): turns of append -> prefill -> reply -> tool call, with compaction."""

    tasks: Annotated[int, Field(ge=1, le=100_000)] = 100  # tasks to simulate
    agents: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # agents running tasks back to back (default 1) ...
    rate_per_s: Annotated[float, Field(ge=1e-6, le=1e9)] | None = None  # ... or tasks arriving as a Poisson process
    # made on first use (an instance here would build its validator at import): model calls per task
    # (compactions extra), system prompt + task, tool output per turn, model output per turn, CPU time
    # between turns
    turns: LengthDist = Field(default_factory=lambda: LengthDist(dist="fixed", value=30))
    first_prompt_tokens: LengthDist = Field(default_factory=lambda: LengthDist(dist="fixed", value=8000))
    append_tokens: LengthDist = Field(default_factory=lambda: LengthDist(dist="lognormal", median=2000, sigma=0.8))
    reply_tokens: LengthDist = Field(default_factory=lambda: LengthDist(dist="lognormal", median=350, sigma=0.6))
    tool_s: TimeDist = Field(default_factory=lambda: TimeDist(dist="lognormal", median=1.9, sigma=0.5))
    context_window: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # default: the model's (or the service's)
    compact_at: Annotated[float, Field(gt=0, le=1)] = 0.835  # share of the window that triggers compaction
    summary_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = 4000  # the compaction call's output
    reread_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 8000  # recent material read again after compaction
    compaction_prompt_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = 256  # the "summarise" instruction
    kv_between_turns: Literal["keep", "drop", "offload"] = "keep"  # the session's KV during a tool call
    # tool calls run on a pool of CPUs (M/M/c-like: a call waits for a free one); None: unlimited
    cpus: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    cpu_scope: Literal["cluster", "replica"] = "cluster"  # one pool for every task, or one per replica
    cpu_speed: Annotated[float, Field(gt=0, le=1000)] = 1.0  # tool seconds are for speed 1: they take tool_s / this
    # turns x this (rounded, at least 1): a weaker model's extra turns and retries (a service's own on top)
    plan_factor: Annotated[float, Field(ge=0.01, le=100)] = 1.0

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


class Arrival(Strict):
    """How requests arrive. ``closed``: ``users`` each send a request, wait for it, think, repeat."""

    process: Literal["poisson", "gamma", "constant", "trace", "closed"] = "poisson"
    rate_per_s: Annotated[float, Field(ge=1e-6, le=1e9)] | None = None
    load: Annotated[float, Field(gt=0, le=10)] | None = None  # rate as a share of the analytic capacity
    cv: Annotated[float, Field(ge=0.01, le=100)] = 1.0  # gamma: coefficient of variation of inter-arrival times
    trace: str | None = None  # CSV with arrival_s,prompt_tokens,output_tokens
    users: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None  # closed: default workload.concurrent_users
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
    context_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # KV sized for this (default prompt+output)
    prompt_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # default context - output
    output_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = 1024
    concurrent_users: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None  # None = one replica at full KV
    simulate: bool = True  # run the discrete-event engine on every feasible point (False: analytic only)
    arrival: Arrival | None = None  # None: closed loop of concurrent_users, else Poisson at load 0.7
    prompt_dist: LengthDist | None = None  # simulation only; default fixed at the prompt length
    output_dist: LengthDist | None = None  # simulation only; default fixed at output_tokens
    requests: Annotated[int, Field(ge=1, le=MAX_REQUESTS)] | None = None  # to simulate; None = max(2000, 3 x closed-loop users)
    agentic: Agentic | None = None  # agent tasks instead of independent requests (arrival ignored)
    warmup_fraction: Annotated[float, Field(ge=0, lt=0.9)] = 0.1  # first share excluded from latency stats
    allow_beyond_window: bool = False  # accept a context longer than the model's context window

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


# every SLO target, once: (name = the simulated figure it bounds, sense: +1 an upper bound,
# -1 a lower bound, the analytic estimate's figure for the same quantity)
SLO_TARGETS = (("ttft_p99_s", 1, "ttft_s"), ("tpot_p99_s", 1, "tpot_s"),
               ("decode_tok_s_per_user_p50", -1, "decode_tok_s_per_user"))


class SLO(Strict):
    """Targets on the simulated percentiles; times take units ("3 s", "500 ms"), speeds "50 tok/s"."""

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
