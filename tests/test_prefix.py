"""Prefix caching (workload.prefix): cached tokens skip prefill but are attended to; a shared
prefix is held once per replica. Hand calculations of memory, exact prefill-token counts
(simulated and analytic), the ledger holding the shared prefix once, and costs per token kind."""
import dataclasses

import numpy as np
import pytest

from planner import catalog
from planner.config.errors import ConfigError
from planner.config.schema import LengthDist, Prefix, Workload
from planner.physics.placement import place, resident_bytes
from planner.physics.point import Config, build_point
from planner.plan import point as sweep
from planner.plan.estimate import estimate
from planner.plan.scenario import expand, load
from planner.sim import engine
from planner.sim.engine import InvariantError, SimSpec, simulate
from planner.sim.replica import Replica
from planner.sim.rounds import ConstantRounds, StepRounds
from planner.sim.workload import Sampler
from planner.sweeps.tables import row as result_row

from tests.conftest import device, shape

LLAMA_KV = 2 * 80 * 8 * 128 * 2  # Llama 3.1 70B, BF16: 327,680 B per token
DEEPSEEK_KV_FP8 = 61 * (512 + 64) * 1  # DeepSeek-V3 MLA latent at FP8: 35,136 B per token


def fixed(v):
    return Sampler(LengthDist(dist="fixed", value=v))


# ------------------------------------------------------------------ memory by hand
def test_shared_prefix_is_held_once_on_a_wafer():
    """4 x CS-3 (39.6 GB usable each), Llama 70B BF16, 8K context of which 6K is a shared system
    prompt: the prefix's KV (6,144 x 327,680 B = 2.01 GB) once, each sequence only its 2,048
    tokens past it (0.67 GB): 22 sequences instead of 6."""
    s, d = shape("llama-3.1-70b"), device("cs3")
    w, _ = resident_bytes(s, "bf16", "bf16", "bf16", 8192, 0.0)
    free = 4 * 44e9 * 0.9 - w.sum()
    plain = place(s, d, 4, "bf16", "bf16", 8192)
    shared = place(s, d, 4, "bf16", "bf16", 8192, shared_tokens=6144)
    assert plain.kv_bytes_per_seq == 8192 * LLAMA_KV
    assert shared.shared_kv_bytes == 6144 * LLAMA_KV and shared.kv_bytes_per_seq == 2048 * LLAMA_KV
    assert shared.kv_bytes_per_token == LLAMA_KV  # still per token of the sequence's own KV
    assert plain.max_concurrent == int(free // (8192 * LLAMA_KV)) == 6
    assert shared.max_concurrent == int((free - 6144 * LLAMA_KV) // (2048 * LLAMA_KV)) == 22
    # every stage holds its weights, its share of the prefix and its share of every sequence
    for st in shared.stages:
        assert st.weight_bytes + st.shared_kv_bytes + shared.max_concurrent * st.kv_bytes_per_seq \
            <= d.capacity_bytes * (1 + 1e-9)
    assert sum(st.shared_kv_bytes for st in shared.stages) == pytest.approx(6144 * LLAMA_KV)
    # count null: the fewest wafers that hold the weights, the prefix once and 22 sequences
    assert place(s, d, None, "bf16", "bf16", 8192, min_sequences=22, shared_tokens=6144).devices == 4


def test_shared_prefix_on_every_data_parallel_gpu():
    """8 x B200, DeepSeek-V3 FP8 with data-parallel MLA attention: each GPU serves its own
    sequences, so each holds the 16K-token prefix (8 x 16,384 x 35,136 B), as it holds its own
    copy of the attention weights (7 more copies of 61 x 187,105,280 FP8 bytes)."""
    s, d = shape("deepseek-v3"), device("b200")
    w, _ = resident_bytes(s, "fp8", "bf16", "fp8", 32768, 0.0)
    p = place(s, d, 8, "fp8", "fp8", 32768, shared_tokens=16384)
    assert p.shared_kv_bytes == 8 * 16384 * DEEPSEEK_KV_FP8
    assert p.kv_bytes_per_seq == 16384 * DEEPSEEK_KV_FP8
    copies = 7 * 61 * 187_105_280
    assert p.max_concurrent == int((8 * d.capacity_bytes - w.sum() - copies - 8 * 16384 * DEEPSEEK_KV_FP8)
                                   // (16384 * DEEPSEEK_KV_FP8))


def test_the_ledger_holds_a_shared_prefix_once():
    """1 B per token, an 800-token shared prefix, 1,000-token prompts, 100-token replies: each
    request holds 1,000 + 100 - 800 = 300 B of its own; three at once take 800 + 3 x 300 =
    1,700 B. With 1,700 B they run together (peak exactly full), with 1 B less two at a time;
    without sharing (800 cached but per request) 1,100 B each: one at a time."""
    def run(budget, shared):
        rounds = ConstantRounds(0.001, kv_budget=budget, kv_per_token=1.0, shared_tokens=800 if shared else 0)
        spec = SimSpec(requests=30, process="closed", users=3, prompt=fixed(1000), output=fixed(100),
                       cached_tokens=0 if shared else 800)
        res = simulate(spec, rounds)
        return res.summary, res.timeseries
    s, ts = run(1700, True)
    assert s.kv_occupancy_peak == pytest.approx(1.0) and ts["batch"].max() == 3
    s, ts = run(1699, True)
    assert s.kv_occupancy_peak == pytest.approx((800 + 2 * 300) / 1699) and ts["batch"].max() == 2
    s, ts = run(1700, False)
    assert s.kv_occupancy_peak == pytest.approx(1100 / 1700) and ts["batch"].max() == 1


# ------------------------------------------------------------------ prefill tokens, exactly
def llama(prefix=0, shared=0, **kw):
    cfg = Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=4, context=8192,
                 prompt=6144, output=1024, cached=prefix, shared_prefix=shared, **kw)
    return cfg, StepRounds(build_point(cfg))


def test_simulated_prefill_falls_by_exactly_the_cached_share():
    """Lognormal prompts with 45% of each found cached: the tokens the replicas prefilled (counted
    in their spans) fall by sum(floor(0.45 x prompt)) exactly; every prompt token is either
    prefilled or cached, and the rates split the same way."""
    _, rounds = llama()
    prompt = Sampler(LengthDist(dist="lognormal", median=3000, sigma=0.5, max=6000))
    base = dict(requests=400, rate_per_s=3.0, prompt=prompt, output=fixed(200))
    plain = simulate(SimSpec(**base), rounds)
    cached = simulate(SimSpec(**base, cached_share=0.45), rounds)
    drawn = plain.requests["prompt_tokens"].to_numpy()  # same seed, same draws
    hits = np.floor(0.45 * drawn).astype(int)
    assert (cached.requests["cached_tokens"] == hits).all()
    assert (cached.requests["prompt_tokens"] + cached.requests["cached_tokens"] == drawn).all()
    assert plain.summary.prefill_tokens == drawn.sum()
    assert cached.summary.prefill_tokens == drawn.sum() - hits.sum()
    s = cached.summary
    assert s.throughput_cached_in_tok_s / (s.throughput_in_tok_s + s.throughput_cached_in_tok_s) \
        == pytest.approx(0.45, abs=0.002)
    assert plain.summary.throughput_cached_in_tok_s == 0
    # less prefill, same decode: first tokens come sooner
    assert s.ttft_p50_s < plain.summary.ttft_p50_s


def test_analytic_prefill_falls_by_exactly_the_cached_share():
    """The closed form: input rates per output token are (prompt - cached) / output fresh and
    cached / output cached; an idle replica's TTFT is the chunked prefill of the fresh tokens
    after the cached ones (attending to them), the same figure the engine gives."""
    cfg0, _ = llama()
    e0 = estimate(dataclasses.replace(cfg0, batch=4))
    cfg, rounds = llama(prefix=2764)  # 45% of 6,144, rounded down
    e = estimate(dataclasses.replace(cfg, batch=4))
    assert e.cached_tokens == 2764
    assert e.input_tok_s / e.aggregate_tok_s == pytest.approx((6144 - 2764) / 1024, rel=1e-12)
    assert e.cached_input_tok_s / e.aggregate_tok_s == pytest.approx(2764 / 1024, rel=1e-12)
    assert e.ttft_s == pytest.approx(build_point(cfg).steps.ttft_s(6144 - 2764, 2764, cfg.prefill_chunk))
    assert e.ttft_s < e0.ttft_s and e.decode_tok_s_per_user >= e0.decode_tok_s_per_user
    # the steady state's interleaved prefill: (B - 1) a fresh / output tokens per round, from `cached`
    sm = build_point(cfg).steps
    r, mixed, _ = sm.steady_round(4, 6144 + 512, 6144, 1024, cfg.prefill_chunk, 2764)
    tokens = 3 * r.accepted_tokens * (6144 - 2764) / 1024
    assert mixed.round_s == pytest.approx(sm.decode_round(4, 6144 + 512, tokens, 6144 - 2764, 2764).round_s)
    # an idle replica, one request: the engine's TTFT is the closed form's (one chunk of 1,984 fresh
    # tokens after 4,096 cached: sizes on the engine's memo grid of 64 tokens and 128-token positions)
    cfg1, rounds1 = llama(prefix=4096, batch=1)
    cfg1 = dataclasses.replace(cfg1, prompt=4096 + 1984, output=64)
    res = simulate(SimSpec(requests=3, process="closed", users=1, prompt=fixed(4096 + 1984), output=fixed(64),
                           cached_tokens=4096, chunk=cfg1.prefill_chunk), rounds1)
    assert res.summary.ttft_p50_s == pytest.approx(estimate(cfg1).ttft_s, rel=1e-6)


def test_invariant_catches_a_miscounted_prefill(monkeypatch):
    _, rounds = llama()
    spec = SimSpec(requests=20, rate_per_s=2.0, prompt=fixed(2000), output=fixed(50), cached_share=0.5)
    assert simulate(spec, rounds).summary.prefill_tokens == 20 * 1000
    class Miscounted(Replica):  # a replica that claims one token it never prefilled
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.prefilled = 1
    monkeypatch.setattr(engine, "Replica", Miscounted)
    with pytest.raises(InvariantError, match="prefill"):
        simulate(spec, rounds)


@pytest.mark.parametrize("policy", ["wait", "preempt", "swap", "offload"])
@pytest.mark.parametrize("shared", [False, True])
def test_invariants_hold_with_prefix_caching(policy, shared):
    """Conservation, Little's law, KV within capacity and the prefill count, on a replica pushed to
    its KV limit (preemption recomputes only what is not cached)."""
    cfg, _ = llama(shared=4096 if shared else 0, prefix=4096 if shared else 0)
    ext = catalog.load_hardware("cs3").external_memory
    rounds = StepRounds(build_point(cfg), ext.capacity, ext.bandwidth)
    out = Sampler(LengthDist(dist="lognormal", median=1200, sigma=0.8, max=2000))
    prompt = Sampler(LengthDist(dist="uniform", low=3000, high=6000))
    res = simulate(SimSpec(requests=300, process="closed", users=80, prompt=prompt, output=out, policy=policy,
                           cached_share=0.0 if shared else 0.6, block_tokens=256), rounds)
    s, r = res.summary, res.requests
    assert s.kv_occupancy_peak <= 1 + 1e-9 or policy == "offload"  # offload: SRAM + the external tier
    assert s.mean_in_system * s.sim_time_s == pytest.approx(r.e2e_s.sum(), rel=1e-9)  # Little's law
    if shared:  # every prompt at least the prefix + 1, all of the prefix cached
        assert (r.cached_tokens == 4096).all() and (r.prompt_tokens >= 1).all()
    if policy == "preempt":
        assert s.preemptions > 0 and s.prefill_tokens > r.prompt_tokens.sum()


# ------------------------------------------------------------------ scenario: schema, rows and costs
SCEN = """
name: p
model: llama-3.1-70b
deployment: {hardware: HW, count: COUNT}
workload:
  context_tokens: 8192
  output_tokens: 512
  concurrent_users: 40
  requests: 300
  prefix: PREFIX
economics: {pue: 1.5, usd_per_kwh: 0.1}
"""


def evaluate(write, prefix, hw="cs3", count=4):
    p = write("p.yaml", SCEN.replace("PREFIX", prefix).replace("HW", hw).replace("COUNT", str(count)))
    loaded = load(p)
    return result_row(sweep.evaluate(loaded, expand(loaded)[0]))


def test_rows_say_what_was_cached_and_costs_add_up_per_token_kind(write):
    plain = evaluate(write, "null")
    shared = evaluate(write, "{cached_tokens: 6000, shared: true}")
    share = evaluate(write, "{cached_share: 0.9}")
    assert plain["cached_tokens"] == 0 and plain["shared_prefix_kv_bytes"] == 0
    assert shared["cached_tokens"] == 6000 and shared["shared_prefix_kv_bytes"] == 6000 * LLAMA_KV
    assert share["cached_tokens"] == int(0.9 * (8192 - 512)) and share["shared_prefix_kv_bytes"] == 0
    # holding the prefix once fits more users per replica: fewer replicas for the same 40 users
    assert shared["max_concurrent_sequences"] > 3 * plain["max_concurrent_sequences"]
    assert shared["replicas"] < plain["replicas"]
    for r in (plain, shared, share):
        assert r["feasible"] and r["throughput_source"] == "sim"
        hours = 3600.0
        rebuilt = (r["throughput_out_tok_s"] * r["cost_usd_per_mtok_out"]
                   + r["throughput_in_tok_s"] * r["cost_usd_per_mtok_in"]
                   + r["throughput_cached_in_tok_s"] * r["cost_usd_per_mtok_cached_in"]) * hours / 1e6
        assert rebuilt == pytest.approx(r["usd_per_h"], rel=1e-12)
        assert r["cost_usd_per_mtok_cached_in"] == pytest.approx(0.1 * r["cost_usd_per_mtok_in"], rel=1e-12)
        total = r["throughput_out_tok_s"] + r["throughput_in_tok_s"] + r["throughput_cached_in_tok_s"]
        assert r["cost_usd_per_mtok_blended"] == pytest.approx(r["usd_per_h"] / (total * hours) * 1e6)
    # 90% of each prompt cached: a tenth of the prompt tokens prefilled (within rounding of the share)
    fresh = share["throughput_in_tok_s"] / (share["throughput_in_tok_s"] + share["throughput_cached_in_tok_s"])
    assert fresh == pytest.approx(1 - int(0.9 * 7680) / 7680, abs=1e-9)


def test_prefix_schema_errors(write):
    for bad, msg in (("{cached_tokens: 10, cached_share: 0.5}", "exactly one of cached_tokens or cached_share"),
                     ("{cached_share: 0.5, shared: true}", "give cached_tokens"),
                     ("{cached_tokens: 7680}", "must be < the prompt"),
                     ("{cached_share: 1.0}", "less than 1")):
        with pytest.raises(ConfigError) as e:
            evaluate(write, bad)
        assert msg in str(e.value) and "p.yaml:" in str(e.value)
    assert Prefix(cached_share=0.45).cached(1000) == 450 and Prefix(cached_tokens=5000).cached(100) == 99
    with pytest.raises(ValueError, match="agent tasks cache their own"):
        Workload(context_tokens=8192, prefix={"cached_share": 0.5}, agentic={"tasks": 2})
    assert Prefix(cached_share=0.0).cached(10) == 0
