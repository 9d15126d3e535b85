"""The workload section's shapes: token-length and time distributions, arrivals, prefix caching,
demand, agent tasks, and the workload section that ties them together."""
from typing import Annotated, Literal

from pydantic import Field, model_validator

from planner.config.schema.base import MAX_REQUESTS, MAX_TOKENS, Seconds, Strict, _q


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
        if self.process in ("poisson", "gamma", "constant") and self.rate_per_s is not None and self.load is not None:
            raise ValueError(f"{self.process} arrivals take one of rate_per_s or load, not both")
        if self.process == "trace" and not self.trace:
            raise ValueError("trace arrivals need trace: FILE.csv")
        return self


class Prefix(Strict):
    """Prefix caching: each prompt starts with tokens whose KV is already present (a system
    prompt, the conversation's earlier turns), so only the rest is prefilled; attention (the
    fresh tokens' and every decode step's) still reads the whole context. ``shared``: one prefix
    common to every request (a system prompt), its KV held once per replica and every prompt at
    least ``cached_tokens + 1`` long; otherwise each request's prefix is its own (its KV comes
    from a cache tier outside the modelled memory and occupies the replica only while the
    request runs). Hit rates 2025-26: chat ~45% of input tokens (Kimi 40%, DeepSeek fleet 56%),
    agentic coding ~90% (TraceLab 95.8%, Claude Code 84-92%)."""

    cached_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None  # per prompt (capped at prompt - 1)
    cached_share: Annotated[float, Field(ge=0, lt=1)] | None = None  # ... or this share of each prompt, rounded down
    shared: bool = False  # True: one prefix for all requests, held once per replica (needs cached_tokens)

    @model_validator(mode="after")
    def _one(self):
        if (self.cached_tokens is None) == (self.cached_share is None):
            raise ValueError("give exactly one of cached_tokens or cached_share")
        if self.shared and self.cached_tokens is None:
            raise ValueError("a shared prefix is one text of a fixed length: give cached_tokens")
        return self

    def cached(self, prompt: int) -> int:
        """Tokens of a ``prompt``-token prompt found cached (at least one token is prefilled)."""
        c = self.cached_tokens if self.cached_tokens is not None else int(self.cached_share * prompt)
        return max(0, min(c, prompt - 1))


class Demand(Strict):
    """The work the deployment must carry within the SLO, in tokens per second (rather than
    heads): replicas = ceil(demand / tokens/s one replica carries at the SLO). Open arrivals
    take their rate from it (demand / tokens per request)."""

    out_tok_s: Annotated[float, Field(gt=0, le=1e15)] | None = None  # output tokens/s of the deployment ...
    tok_s: Annotated[float, Field(gt=0, le=1e15)] | None = None  # ... or every token: output + input + cached input

    @model_validator(mode="after")
    def _one(self):
        if (self.out_tok_s is None) == (self.tok_s is None):
            raise ValueError("give exactly one of out_tok_s or tok_s")
        return self

    @property
    def value(self) -> float:
        return self.out_tok_s if self.out_tok_s is not None else self.tok_s

    @property
    def unit(self) -> str:
        return "out tok/s" if self.out_tok_s is not None else "tok/s"

    def of(self, out_tok_s: float, in_tok_s: float, cached_in_tok_s: float) -> float:
        """The demand's kind of tokens/s among rates of output, fresh input and cached input."""
        return out_tok_s if self.out_tok_s is not None else out_tok_s + in_tok_s + cached_in_tok_s

    def per_request(self, prompt: float, output: float) -> float:
        """Tokens of the demand's kind in a request of ``prompt`` (cached included) and ``output`` tokens."""
        return output if self.out_tok_s is not None else prompt + output


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
    prefix: Prefix | None = None  # prefix caching: tokens of each prompt not prefilled
    demand: Demand | None = None  # size for tokens/s (replaces concurrent_users as the target)

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
        return self._targets()

    def _targets(self):
        p, arr = self.prefix, self.arrival
        if p is not None and p.cached_tokens is not None and p.cached_tokens >= self.prompt:
            raise ValueError(f"prefix.cached_tokens ({p.cached_tokens}) must be < the prompt ({self.prompt} tokens): "
                             "its last token is prefilled to give the first output token")
        if p is not None and self.agentic is not None:
            raise ValueError("agent tasks cache their own earlier turns (agentic.kv_between_turns); "
                             "prefix applies to independent requests")
        open_ = arr is not None and arr.process in ("poisson", "gamma", "constant")
        if self.demand is not None:
            if self.concurrent_users is not None:
                raise ValueError("give concurrent_users (heads) or demand (tokens/s), not both")
            if open_ and (arr.rate_per_s is not None or arr.load is not None):
                raise ValueError("demand sets the open arrival rate (demand / tokens per request): "
                                 "leave arrival.rate_per_s and arrival.load unset")
            if self.agentic is not None or (arr is not None and arr.process == "trace"):
                raise ValueError("demand sizes request streams (open or closed loops), not agent tasks or traces")
        elif open_ and arr.rate_per_s is None and arr.load is None:
            raise ValueError(f"{arr.process} arrivals need one of arrival.rate_per_s, arrival.load or workload.demand")
        return self

    @property
    def context(self) -> int:
        return self.context_tokens if self.context_tokens is not None else self.prompt_tokens + self.output_tokens

    @property
    def prompt(self) -> int:
        return self.prompt_tokens if self.prompt_tokens is not None else self.context - self.output_tokens
