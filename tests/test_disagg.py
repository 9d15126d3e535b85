"""Disaggregated prefill and decode (sim/disagg.py, plan/disagg.py) against hand calculations:
one request's timeline, N transfers sharing a wafer's straw, conservation and Little's law on
both pools, the decode side with an infinitely fast link as a decode-only replica, the sizing's
queueing model, two pools' costs, and scenarios/disagg.yaml at small size."""
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from planner import catalog
from planner.config.errors import ConfigError
from planner.config.schema import Economics, LengthDist
from planner.physics.point import Config, build_point
from planner.sim.disagg import DecodeSide, PrefillPool
from planner.sim.engine import SimSpec, simulate
from planner.sim.errors import InvariantError
from planner.sim.rounds import ConstantRounds, StepRounds
from planner.sim.workload import Sampler, Trace

REPO = Path(__file__).resolve().parents[1]
EXACT = dict(rel=1e-9, abs=1e-9)


def burst(n: int, prompt: int, output: int, decode, pool: PrefillPool, **kw):
    """n requests at t = 0 (one per prefill replica when the pool has n)."""
    tr = Trace(np.zeros(n), np.full(n, prompt, np.int64), np.full(n, output, np.int64))
    spec = SimSpec(requests=n, process="trace", trace=tr, warmup_fraction=0.0, **kw)
    return simulate(spec, decode, pool)


# ------------------------------------------------------------------ one request, by hand
def test_one_request_timeline_by_hand():
    """Prefill rounds of 0.2 s, 1,000-token chunks: a 3,000-token prompt's first token at 0.6 s.
    Its KV (1 B/token: 3,000 B) crosses the prefill NICs (1,000 B/s) and the decode NICs
    (2,000 B/s): 3 s at the slower. It joins the idle decode replica at 3.6 s and makes its 9
    other tokens in 9 rounds of 0.01 s: done at 3.69 s. TPOT counts the 3 s gap."""
    pool = PrefillPool(ConstantRounds(0.2, kv_per_token=1.0), 1, egress_bytes_per_s=1000.0,
                       ingress_bytes_per_s=2000.0, chunk=1000)
    r = burst(1, 3000, 10, ConstantRounds(0.01, kv_per_token=1.0, link_bw=2000.0), pool, chunk=1000).requests.iloc[0]
    assert r.ttft_s == pytest.approx(0.6, **EXACT)
    assert r.kv_transfer_s == pytest.approx(3.0, **EXACT)
    assert r.decode_join_s == pytest.approx(3.6, **EXACT)
    assert r.e2e_s == pytest.approx(0.6 + 3.0 + 9 * 0.01, **EXACT)
    assert r.tpot_s == pytest.approx((3.0 + 0.09) / 9, **EXACT)
    assert r.prefill_replica == 1 and r.replica == 0  # decode replicas first, then the prefill pool


def llama_8b(hardware: str, count: int) -> StepRounds:
    cfg = Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware(hardware), count=count, weights="bf16",
                 kv="bf16", context=8192, output=1024, prefill_chunk=8192)
    return StepRounds(build_point(cfg))


def test_one_request_b200_prefill_cs3_decode_by_hand():
    """Llama 3.1 8B BF16: prefill on 8 B200s, decode on one CS-3. TTFT = the step model's idle
    prefill of 7,168 tokens; the KV (7,168 x 128 KiB = 940 MB) crosses 8 x 400 Gb/s = 400 GB/s
    out of the GPUs and the wafer's 12 x 100 GbE = 150 GB/s in: 6.26 ms at the straw; then
    1,023 decode rounds of one sequence, summed from the round model."""
    from planner.plan.disagg import nic_rates
    pre, dec = llama_8b("b200", 8), llama_8b("cs3", 1)
    out_bw, seq_bw = nic_rates(build_point(Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware("b200"),
                                                  count=8, context=8192)))
    assert (out_bw, seq_bw) == (pytest.approx(400e9), pytest.approx(400e9))  # GQA: a sequence's KV on all 8
    assert dec.link_bytes_per_s == pytest.approx(150e9)
    prompt, output = 7168, 1024
    nbytes = 7168 * 2 * 32 * 8 * 128 * 2
    assert float(dec.kv_bytes(prompt)) == pytest.approx(nbytes)
    pool = PrefillPool(pre, 1, out_bw, 150e9, seq_bw, chunk=8192)
    r = burst(1, prompt, output, dec, pool, chunk=8192).requests.iloc[0]
    assert r.ttft_s == pytest.approx(pre.sm.ttft_s(prompt, 0, 8192), rel=1e-9)
    assert r.kv_transfer_s == pytest.approx(nbytes / 150e9, rel=1e-9)
    rounds = sum(dec.decode(1, prompt + 1 + k)[0] for k in range(output - 1))
    assert r.finish_s - r.decode_join_s == pytest.approx(rounds, rel=1e-3)
    assert r.e2e_s == pytest.approx(r.ttft_s + nbytes / 150e9 + rounds, rel=1e-3)


# ------------------------------------------------------------------ the straw, shared
@pytest.mark.parametrize("n", [1, 2, 5])
def test_n_simultaneous_transfers_into_one_wafer_each_take_n_times_one(n):
    """n prompts prefilled at once on n prefill replicas land together; their KV (940 MB each)
    enters one CS-3 through its 150 GB/s together: each transfer takes n x 6.26 ms."""
    pre, dec = llama_8b("b200", 8), llama_8b("cs3", 1)
    pool = PrefillPool(pre, n, 400e9, 150e9, chunk=8192)
    r = burst(n, 7168, 64, dec, pool, chunk=8192).requests
    one = float(dec.kv_bytes(7168)) / 150e9
    assert r.kv_transfer_s.to_numpy() == pytest.approx([n * one] * n, rel=1e-9)
    assert sorted(r.prefill_replica) == list(range(1, n + 1))


def test_prefill_nics_bound_when_the_decode_side_is_wide():
    """The slower end sets the pace, shared by processor sharing. One prefill replica whose NICs
    move 1,000 B/s sends two 1,000 B prompts to two decode replicas of 10,000 B/s each. The
    prompts land 0.1 s apart (the second arrived after the first's round began): the first
    moves 100 B alone, then both move at 500 B/s until it is done at 2.0 s (1.9 s), and the
    second its last 100 B alone (done at 2.1 s: 1.9 s too)."""
    pool = PrefillPool(ConstantRounds(0.1, kv_per_token=1.0), 1, 1000.0, 10_000.0, chunk=2000)
    r = burst(2, 1000, 5, ConstantRounds(0.01, kv_per_token=1.0, link_bw=10_000.0), pool, chunk=2000,
              replicas=2).requests
    assert r.replica.tolist() == [0, 1] and r.handoff_s.to_numpy() == pytest.approx([0.1, 0.2], **EXACT)
    assert r.kv_transfer_s.to_numpy() == pytest.approx([1.9, 1.9], **EXACT)
    assert r.decode_join_s.to_numpy() == pytest.approx([2.0, 2.1], **EXACT)


# ------------------------------------------------------------------ conservation, Little's law
def poisson_run(requests: int = 3000):
    """3 prefill replicas (prompts of exactly one 1,000-token chunk: one 0.05 s round each) in
    front of 2 decode replicas, Poisson arrivals."""
    pre = ConstantRounds(0.05, kv_per_token=1.0, kv_budget=1e5)
    dec = ConstantRounds(0.01, kv_per_token=1.0, link_bw=1e5, kv_budget=2e5)
    pool = PrefillPool(pre, 3, egress_bytes_per_s=5e4, ingress_bytes_per_s=1e5, chunk=1000)
    spec = SimSpec(requests=requests, process="poisson", rate_per_s=40, replicas=2, seed=3, chunk=1000,
                   prompt=Sampler(LengthDist(dist="fixed", value=1000)),
                   output=Sampler(LengthDist(dist="uniform", low=1, high=300)))
    return simulate(spec, dec, pool), pool


def test_conservation_and_littles_law_hold_on_both_pools():
    """The engine's checks ran on both pools (simulate raises otherwise); by hand here: every
    request finished; the time-integral of requests in the system equals the summed sojourns;
    the prefill pool worked exactly one 0.05 s round per prompt (busy share = n x 0.05 / (3 x
    span)); 1-token replies never crossed the link, the others each moved their 1,000 B."""
    res, pool = poisson_run()
    s, q = res.summary, res.requests
    assert (q.finish_s >= q.arrival_s).all() and len(q) == 3000
    assert s.mean_in_system * s.sim_time_s == pytest.approx(float(q.e2e_s.sum()), rel=1e-9)
    assert s.prefill_util_max == pytest.approx(3000 * 0.05 / (3 * s.sim_time_s), rel=1e-9)
    one = q.output_tokens == 1
    assert q.kv_transfer_s[one].isna().all() and (q.kv_transfer_s[~one] >= 1000 / 5e4 - 1e-12).all()
    assert s.kv_ingress_util == pytest.approx(1000 * (~one).sum() / (2 * 1e5 * s.sim_time_s), rel=1e-9)
    assert 0 < s.handoff_p50_s <= s.handoff_p99_s


def test_the_invariants_see_a_request_lost_in_transfer(monkeypatch):
    """A decode replica that forgot its in-transit requests breaks Little's law: the checks
    cover the transfers, not only the pools' own queues."""
    def outstanding(self):
        return (len(self.queue) + len(self.running) + len(self.landing) + len(self.prefilling)
                + len(self.swapped) + len(self.remote))
    monkeypatch.setattr(DecodeSide, "outstanding", outstanding)
    with pytest.raises(InvariantError):
        poisson_run(requests=300)


# ------------------------------------------------------------------ the decode side, alone
FAST = 1e30  # bytes/s: a link that takes no time


@pytest.mark.parametrize("n", [1, 4])
def test_infinitely_fast_link_and_identical_hardware_make_a_decode_only_replica(n):
    """Llama 3.1 8B on one CS-3 for both pools, a link that takes no time. One request: the
    same TTFT and finish as on a single (aggregated) replica. n prompts prefilled at once on n
    prefill replicas: they join one decode replica together at their first token and decode
    as a batch of n from context prompt + 1 with nothing else on it: finish - first token =
    sum over rounds of the round model at batch n (the closed form of a decode-only replica)."""
    m = llama_8b("cs3", 1)
    pool = PrefillPool(m, n, FAST, FAST, chunk=8192)
    prompt, output = 4096, 512
    r = burst(n, prompt, output, m, pool, chunk=8192).requests
    assert r.first_token_s.nunique() == 1 and (r.decode_join_s == r.first_token_s).all()
    rounds = sum(m.decode(n, prompt + 1 + k)[0] for k in range(output - 1))
    assert (r.finish_s - r.first_token_s).to_numpy() == pytest.approx([rounds] * n, rel=1e-3)
    if n == 1:
        tr = Trace(np.zeros(1), np.array([prompt]), np.array([output]))
        one = simulate(SimSpec(requests=1, process="trace", trace=tr, warmup_fraction=0.0, chunk=8192), m).requests
        assert r.ttft_s.iloc[0] == pytest.approx(one.ttft_s.iloc[0], rel=1e-12)
        assert r.finish_s.iloc[0] == pytest.approx(one.finish_s.iloc[0], rel=1e-9)


# ------------------------------------------------------------------ sizing and costs (plan/)
def test_nic_rates_follow_the_specs():
    """8 x B200: 8 x 400 Gb/s = 400 GB/s; DeepSeek's MLA KV under data-parallel attention sits
    on one GPU: one sequence gets 50 GB/s. A wafer pipeline: its stages' 150 GB/s in parallel,
    as fast as the busiest stage's share allows: on 24 CS-3s the first stage (its 3 dense layers
    light, so 4.4 layers) holds 7.2% of a sequence's KV, so 150 GB/s / 0.072 = 2.1 TB/s."""
    from planner.plan.disagg import nic_rates
    ds = catalog.load_model("deepseek-r1")
    gpu = build_point(Config(ds, catalog.load_hardware("b200"), count=8, weights="fp8", kv="fp8", context=8192))
    assert nic_rates(gpu) == (pytest.approx(400e9), pytest.approx(50e9))
    wafers = build_point(Config(ds, catalog.load_hardware("cs3"), count=24, weights="fp8", kv="fp8", context=8192))
    share = np.array([s.kv_bytes_per_seq for s in wafers.placement.stages])
    total, one = nic_rates(wafers)
    assert total == one == pytest.approx(150e9 / (share / share.sum()).max())
    assert total == pytest.approx(2.08e12, rel=0.01)


def test_prefill_replicas_are_the_fewest_that_meet_the_ttft_target():
    """Each replica an M/D/1 queue of lambda / P: its p99 wait ln(100 rho) rho s / (2 (1 - rho))
    plus one prompt alone within the target, with one replica fewer missing it."""
    from planner.plan.disagg import prefill_replicas
    from planner.plan.probe import md1_p99_wait
    lam, s, alone, target = 50.0, 0.1, 0.12, 0.5
    p = prefill_replicas(lam, s, alone, target)
    assert md1_p99_wait(lam * s / p, s) + alone <= target < md1_p99_wait(lam * s / (p - 1), s) + alone
    # by hand: 8 replicas, rho 0.625: ln(62.5) 0.625 0.1 / (2 x 0.375) = 0.345 s, + 0.12 <= 0.5;
    # 7, rho 0.714: 0.534 s, + 0.12 > 0.5
    assert p == 8
    assert prefill_replicas(lam, s, 0.6, target) == math.ceil(lam * s / 0.7)  # out of reach: load 0.7


def test_two_pools_cost_the_sum_of_their_hours():
    """$/h, capex and power of a deployment with a prefill pool are the two pools' sums; the
    hour's cost is still split over the tokens by the price ratio ($/h = sum of tokens/h x $/token)."""
    from planner.physics.hardware import resolve
    from planner.plan.economics import costs, usd_per_hour
    econ = Economics()
    cs3, b200 = (resolve(catalog.load_hardware(h)) for h in ("cs3", "b200"))
    c = costs(cs3, 25, econ, 7e5, 4.6e6, 680.0, activity=0.4, also=((b200, 608, 0.8),))
    one, two = usd_per_hour(cs3, 25, econ, 0.4), usd_per_hour(b200, 608, econ, 0.8)
    assert c.usd_per_h == pytest.approx(one[2] + two[2], rel=1e-12)
    assert c.capex_usd == pytest.approx(25 * 1.0e6 + 608 * 62500, rel=1e-12)
    assert c.power_kw_nameplate == pytest.approx(25 * 23 + 608 * 1.79, rel=1e-12)
    assert c.power_kw == pytest.approx(one[0].kw + two[0].kw, rel=1e-12)
    assert one[0].idle_kw < one[0].kw < one[0].nameplate_kw  # each pool at its own activity
    assert min(0.4, 0.8) < c.activity < max(0.4, 0.8)
    per_h = (7e5 * c.cost_usd_per_mtok_out + 4.6e6 * c.cost_usd_per_mtok_in) * 3600 / 1e6
    assert per_h == pytest.approx(c.usd_per_h, rel=1e-12)


# ------------------------------------------------------------------ scenarios/disagg.yaml, small
def small_disagg(tmp_path) -> Path:
    """scenarios/disagg.yaml shrunk: 32 users, 2K contexts, 128-token replies, one speed target."""
    data = yaml.safe_load((REPO / "scenarios" / "disagg.yaml").read_text(encoding="utf-8"))
    data["workload"].update(context_tokens=2048, output_tokens=128, concurrent_users=32)
    data["capacity"]["max_probes"] = 4
    for g in data["sweep"]:
        g["axes"]["workload.context_tokens"] = [2048]
        g["axes"]["slo.decode_tok_s_per_user_p50"] = [200]
    path = tmp_path / "disagg.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_disagg_yaml_runs_at_small_size(tmp_path):
    """Every group runs; the disaggregated row says so, names both hardware, and costs both
    pools (its $/h is the CS-3 pool's plus the B200 pool's); its sequences crossed the link."""
    import planner
    from planner.physics.hardware import resolve
    from planner.plan.economics import usd_per_hour
    df = planner.sweep(small_disagg(tmp_path), jobs=1)
    assert set(df["group"]) == {"b200-prefill-cs3-decode", "b200-prefill-b200-decode", "all-cs3", "all-b200"}
    d = df[df["group"] == "b200-prefill-cs3-decode"].iloc[0]
    assert d["disaggregated"] and d["hardware"] == "b200+cs3"
    assert (d["prefill_hardware"], d["decode_hardware"]) == ("b200", "cs3")
    assert d["feasible"] and d["throughput_source"] == "sim" and d["kv_transfer_p50_s"] > 0
    econ = Economics()
    pools = ((resolve(catalog.load_hardware("cs3")), int(d["decode_devices"])),
             (resolve(catalog.load_hardware("b200")), int(d["prefill_devices"])))
    # both pools' hours: between all idle and all at load (power follows each pool's activity)
    idle, full = (sum(usd_per_hour(dev, n, econ, u)[2] for dev, n in pools) for u in (0.0, 1.0))
    assert idle < d["usd_per_h"] < full
    assert d["capex_usd"] == pytest.approx(sum(usd_per_hour(dev, n, econ, 0.0)[1] for dev, n in pools), rel=1e-12)
    assert d["devices"] == d["decode_devices"] + d["prefill_devices"]
    assert df[df["group"] == "b200-prefill-b200-decode"].iloc[0]["hardware"] == "b200+b200"
    assert df[df["group"].str.startswith("all-")]["disaggregated"].isna().all()


# ------------------------------------------------------------------ bad input
BASE = """
name: d
model: llama-3.1-8b
deployment:
  hardware: cs3
  disaggregated: {prefill: {hardware: b200, count: 8}}
workload: {context_tokens: 4096, output_tokens: 256, concurrent_users: 8}
slo: {ttft_p99_s: 1.0}
"""


@pytest.mark.parametrize("edit, where, words", [
    ("deployment:\n  kv_policy: swap", "deployment.kv_policy", "runs kv_policy wait"),
    ("slo: {decode_tok_s_per_user_p50: 100}", "deployment.disaggregated.prefill", "needs slo.ttft_p99_s"),
    ("deployment:\n  disaggregated: {prefill: {hardware: b20}}", "deployment.disaggregated.prefill.hardware", "b200"),
    ("workload: {context_tokens: 4096, output_tokens: 256, arrival: {process: poisson, load: 0.5}}",
     "deployment.disaggregated", "concurrent_users"),
    ("workload: {context_tokens: 4096, output_tokens: 256, concurrent_users: 8, prefix: {cached_share: 0.5}}",
     "workload.prefix", "not modelled on a disaggregated"),
])
def test_bad_disaggregated_scenarios_say_where(write, edit, where, words):
    from planner.plan.scenario import load
    data = yaml.safe_load(BASE)
    for k, v in yaml.safe_load(edit).items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and k == "deployment" else v
    path = write("d.yaml", yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load(path)
    assert any(p.path == where and words in p.message for p in e.value.problems), e.value.problems
    assert all(p.line for p in e.value.problems)


# ------------------------------------------------------------------ sizing, end to end
SMALL = """
name: small-disagg
model: llama-3.1-8b
deployment:
  hardware: cs3
  count: 1
  disaggregated: {prefill: {hardware: h100, count: 1}}
workload: {context_tokens: 4096, output_tokens: 256, concurrent_users: 32}
slo: {ttft_p99_s: 0.5, decode_tok_s_per_user_p50: 300}
"""


def test_sizing_passes_and_half_the_prefill_pool_does_not(write):
    """Llama 3.1 8B decoded on single CS-3s behind 1-GPU H100 prefill replicas. The sized
    deployment meets the SLO with its prefill pool under 95% load; the same deployment with half
    the prefill replicas (set) misses, and says which pool is loaded past 95% (a run of a few
    seconds would not see that queue grow). Analytic only: the prefill pool is the M/D/1 sizing."""
    from planner.plan.disagg import prefill_replicas
    from planner.plan.point import run_point
    from planner.plan.scenario import load
    from planner.sweeps.tables import row
    loaded = load(write("s.yaml", SMALL))
    r = row(run_point(loaded, loaded.points[0])[0])
    assert r["slo_pass"] and r["throughput_source"] == "sim" and r["prefill_util_max"] < 0.95
    assert r["usd_per_h"] > 0 and r["hardware"] == "h100+cs3" and r["capacity_probes"] >= 1
    data = yaml.safe_load(SMALL)
    data["deployment"]["replicas"] = int(r["replicas"])
    data["deployment"]["disaggregated"]["prefill"]["replicas"] = int(r["prefill_replicas"]) // 2
    half = load(write("h.yaml", yaml.safe_dump(data)))
    h = row(run_point(half, half.points[0])[0])
    assert not h["slo_pass"] and "prefill" in h["reason"] and h["prefill_replicas"] == r["prefill_replicas"] // 2
    a = row(run_point(loaded, loaded.points[0], simulate=False)[0])
    assert a["throughput_source"] == "analytic"
    rate = a["throughput_req_s"]
    assert a["prefill_replicas"] == prefill_replicas(rate, a["prefill_s_per_prompt"], a["prefill_ttft_analytic_s"], 0.5)


def test_plan_run_says_both_pools(write, tmp_path):
    """`plan run` on a disaggregated scenario: both pools in the first line, the handoff next,
    and requests.csv with each request's prefill replica, handoff and transfer."""
    import pandas as pd
    from click.testing import CliRunner
    from planner.cli import main
    r = CliRunner().invoke(main, ["run", str(write("s.yaml", SMALL)), "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "x cs3 decoding (1 replica) behind" in r.output and "KV handoff p50/p99" in r.output
    q = pd.read_csv(tmp_path / "o" / "requests.csv")
    assert {"prefill_replica", "handoff_s", "kv_transfer_s", "decode_join_s"} <= set(q.columns)
    assert (q.decode_join_s >= q.handoff_s + q.kv_transfer_s - 1e-9).all()
