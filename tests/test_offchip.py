"""The off-chip links inside the simulator: agents' KV trips, swap and offload share each
replica's link (sim/links.py) and the external tier's port, against hand calculations."""
import numpy as np
import pytest

from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds
from planner.sim.sessions import TURN, CallPlan

EXACT = dict(rel=1e-9, abs=1e-9)


def two_turn_tasks(n: int, prompt: int = 40, reply: int = 10, append: int = 5, tool: float = 0.5) -> CallPlan:
    """``n`` identical tasks of two turns: prompt -> reply -> tool -> append -> reply."""
    session = np.repeat(np.arange(n), 2)
    return CallPlan(session=session, kind=np.full(2 * n, TURN, np.int8),
                    ctx_before=np.tile([0, prompt + reply], n), new=np.tile([prompt, append], n),
                    output=np.full(2 * n, reply), tool_after=np.tile([tool, 0.0], n),
                    cache_after=np.tile([True, False], n), first=np.arange(0, 2 * n, 2), count=np.full(n, 2))


def trips(n: int, **rounds_kw):
    """n agents whose first calls finish together (one prefill round, same reply length)."""
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0, external_bytes=1e9, link_bw=10.0, **rounds_kw)
    spec = SimSpec(requests=2 * n, plan=two_turn_tasks(n), agents=n, kv_between_turns="offload",
                   chunk=10_000, replicas=1)
    return simulate(spec, rounds)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_n_concurrent_agent_kv_trips_each_take_n_times_one(n):
    """Each first call holds 40 + 10 = 50 B of KV. n trips out start together on a 10 B/s link:
    each takes n x 5 s (the 0.5 s tool is hidden under it), then n trips back, n x 5 s again.
    Before links were shared every trip took 5 s whatever n."""
    res = trips(n)
    assert res.tasks.parts["kv_transfer"] == pytest.approx([2 * n * 5.0 - 0.5] * n, **EXACT)
    assert res.summary.tasks.share_kv_transfer > 0


def test_a_shared_tier_port_slows_trips_from_every_replica_it_serves():
    """Two replicas (one agent each) behind one tier port of 10 B/s, each with its own 10 B/s
    link: the two trips share the port (5 B/s each): 10 s each way, as two trips on one link."""
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0, external_bytes=1e9, link_bw=10.0,
                            tier_bw=10.0, replicas_per_tier=2)
    spec = SimSpec(requests=4, plan=two_turn_tasks(2), agents=2, kv_between_turns="offload", chunk=10_000,
                   replicas=2)
    res = simulate(spec, rounds)
    assert sorted(res.requests["replica"].tolist()) == [0, 0, 1, 1]
    assert res.tasks.parts["kv_transfer"] == pytest.approx([2 * 10.0 - 0.5] * 2, **EXACT)


# ------------------------------------------------------------------ offload on real hardware
from planner import catalog  # noqa: E402
from planner.physics.point import Config, build_point  # noqa: E402
from planner.sim.workload import Trace  # noqa: E402

CTX, OUT = 131072, 1024


def llama_128k():
    """Llama 3.3 70B, FP8 weights and KV, 8 CS-3s (scenarios/long-context.yaml), 128K contexts."""
    cfg = Config(catalog.load_model("llama-3.3-70b"), catalog.load_hardware("cs3"), count=8, weights="fp8",
                 kv="fp8", context=CTX, output=OUT)
    ext = catalog.load_hardware("cs3").external_memory
    from planner.sim.rounds import StepRounds
    return StepRounds(build_point(cfg), ext.capacity, ext.bandwidth)


def burst(rounds, n: int, **kw):
    """n requests of 127K + 1K tokens, all at t = 0."""
    tr = Trace(np.zeros(n), np.full(n, CTX - OUT, np.int64), np.full(n, OUT, np.int64))
    spec = SimSpec(requests=n, process="trace", trace=tr, policy="offload", warmup_fraction=0.0, chunk=8192, **kw)
    return simulate(spec, rounds)


def test_one_offloaded_128k_sequence_decodes_at_its_bytes_over_the_link():
    """The issue's oracle. SRAM holds n whole 128K reservations; request n+1 gets what is left
    and puts the rest off-chip: off = kv(128K) - (budget - n kv(128K)) bytes, read once per
    token over the replica's path (8 wafers' links in parallel, by stage share). Alone on the
    link it decodes at link / off tokens/s, closed form, within 2%; the n resident ones decode
    at on-chip speed, not held back (offload_batching: separate)."""
    m = llama_128k()
    res_bytes = float(m.kv_bytes(CTX))
    n = int(m.kv_budget // res_bytes)
    off = res_bytes - (m.kv_budget - n * res_bytes)
    closed = m.link_bytes_per_s / off
    assert m.link_bytes_per_s == pytest.approx(8 * 150e9, rel=0.02)  # 8 stages, even shares
    r = burst(m, n + 1).requests
    speed = (OUT - 1) / (r.finish_s - r.first_token_s)
    assert speed.iloc[-1] == pytest.approx(closed, rel=0.02)
    assert closed < 100 and speed.iloc[:-1].min() > 10 * closed  # residents decode on, ~10x faster


def test_offload_together_holds_the_residents_to_the_offloaded_reads():
    """n residents with long replies (112K + 16K) still decoding when an offloaded 127K + 1K
    joins: with ``together`` every round of theirs waits for its read, so they slow to about
    its pace while it decodes; with ``separate`` they do not notice it. The offloaded one reads
    at link / off either way."""
    m = llama_128k()
    res_bytes = float(m.kv_bytes(CTX))
    n = int(m.kv_budget // res_bytes)
    closed = m.link_bytes_per_s / (res_bytes - (m.kv_budget - n * res_bytes))
    prompts, outputs = [CTX - 16384] * n + [CTX - OUT], [16384] * n + [OUT]
    speeds = {}
    for mode in ("separate", "together"):
        tr = Trace(np.zeros(n + 1), np.array(prompts, np.int64), np.array(outputs, np.int64))
        r = simulate(SimSpec(requests=n + 1, process="trace", trace=tr, policy="offload", warmup_fraction=0.0,
                             chunk=8192, offload_batching=mode), m).requests
        speeds[mode] = ((r.output_tokens - 1) / (r.finish_s - r.first_token_s)).to_numpy()
        assert speeds[mode][-1] == pytest.approx(closed, rel=0.02)
    # together: while it decodes ((OUT - 1) / closed seconds) the residents make one token per
    # read, at its pace; the rest of their 16K tokens at their own speed
    slow, own = (OUT - 1) / closed, np.median(speeds["separate"][:-1])
    expect = 16383 / (slow + (16383 - slow * closed) / own)
    assert np.median(speeds["together"][:-1]) == pytest.approx(expect, rel=0.02)
    assert expect < 0.6 * own


def test_offloaded_sequences_share_the_link_and_nothing_is_offloaded_when_sram_holds_all():
    """k sequences wholly off-chip at once (SRAM held by n): each reads at 1/k of the link."""
    m = llama_128k()
    n = int(m.kv_budget // float(m.kv_bytes(CTX)))
    alone = burst(m, n).summary
    assert alone.offchip_transfer_util == 0
    crowd = burst(m, n + 4).requests
    speed = ((OUT - 1) / (crowd.finish_s - crowd.first_token_s)).to_numpy()
    full = m.link_bytes_per_s / float(m.kv_bytes(CTX))
    # the last three are wholly off-chip; they overlap for most of their decode: ~1/3-1/4 of link speed
    assert (speed[-3:] < full / 2.5).all() and (speed[-3:] > full / 4.5).all()


# ------------------------------------------------------------------ the fixed-load curve (long-context.yaml)
def test_long_context_fixed_load_curve_runs_users_past_the_sram_limit():
    """scenarios/long-context.yaml, group users-past-sram, 22 users on one replica whose SRAM
    holds 11 sequences of 128K: simulated (a fixed load), not refused. With offload (separate)
    half the users decode off-chip: the time-averaged per-user speed falls far below the
    median request's (the resident half keeps full speed) while the replica serves as much as
    at the limit; with together every round waits for the reads and the replica serves a
    tenth as much. Analytic only, the same point is refused as before (users need replicas)."""
    from pathlib import Path

    from planner.plan.point import run_point
    from planner.plan.scenario import load
    from planner.sweeps.tables import row

    loaded = load(Path(__file__).parent.parent / "scenarios" / "long-context.yaml")
    pts = {(p.values["deployment.kv_policy"], p.values["deployment.offload_batching"], p.values[
        "workload.concurrent_users"]): p for p in loaded.points if p.group == "users-past-sram"}
    at = {k: row(run_point(loaded, pts[k])[0]) for k in [("offload", "separate", 11), ("offload", "separate", 22),
                                                           ("offload", "together", 22)]}
    limit, sep, tog = at[("offload", "separate", 11)], at[("offload", "separate", 22)], at[("offload", "together", 22)]
    assert sep["feasible"] and sep["max_concurrent_sequences"] == 11 and sep["concurrent_users"] == 22
    assert limit["offchip_transfer_util"] == 0 and sep["offchip_transfer_util"] > 0.9
    assert sep["decode_tok_s_per_user_time_avg"] < 0.15 * sep["decode_tok_s_per_user_p50"]
    assert sep["throughput_out_tok_s"] > 0.9 * limit["throughput_out_tok_s"]
    assert tog["throughput_out_tok_s"] < 0.15 * sep["throughput_out_tok_s"]
    refused = row(run_point(loaded, pts[("offload", "separate", 22)], simulate=False)[0])
    assert not refused["feasible"] and "22 users need 2 replicas of 11 sequences; 1 configured" in refused["reason"]


def test_a_tier_unit_shared_by_several_wafers_becomes_a_port_per_group_of_replicas():
    """external_memory.shared_by wafers behind one unit with port_bandwidth: an 8-wafer replica
    behind units of 4 wafers has two ports of its own (2 x the port); behind units of 16 wafers
    two replicas share one port; no port_bandwidth: no port limit."""
    cfg = Config(catalog.load_model("llama-3.3-70b"), catalog.load_hardware("cs3"), count=8, weights="fp8",
                 kv="fp8", context=CTX, output=OUT)
    from planner.sim.rounds import StepRounds
    built = build_point(cfg)
    four, sixteen = StepRounds(built, 1e12, 150e9, 4, 100e9), StepRounds(built, 1e12, 150e9, 16, 100e9)
    assert (four.replicas_per_tier, four.tier_bytes_per_s) == (1, pytest.approx(200e9))
    assert (sixteen.replicas_per_tier, sixteen.tier_bytes_per_s) == (2, pytest.approx(100e9))
    assert StepRounds(built, 1e12, 150e9).tier_bytes_per_s == float("inf")
