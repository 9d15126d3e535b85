"""Agent tasks: Amdahl's law both ways, compaction, KV between turns, invariants, determinism."""
import numpy as np
import pytest

from planner.config.schema import Agentic, LengthDist, Service, TimeDist
from planner.plan.point import run_point as run_result
from planner.sweeps.tables import row as result_row
from planner.plan.scenario import load
from planner.plan.agents import plan_calls, service_times
from planner.sim.sessions import COMPACTION, PARTS, task_summary

FRONTIER = dict(name="frontier", decode_tok_s=67, ttft_s=1.0, prefill_tok_s=20000, context_window=1_000_000)
FAST = dict(name="fast", decode_tok_s=1000, ttft_s=0.2, prefill_tok_s=100000, context_window=128_000)


def agentic(**kw):
    """The field test's shape (DOMAIN.md 6): ~2 s tool calls, tens of turns of short tool-call
    replies, tool outputs of a few thousand tokens growing the context past 100K."""
    base = dict(tasks=60, agents=1, turns=LengthDist(dist="uniform", low=20, high=40),
                first_prompt_tokens=LengthDist(dist="fixed", value=12000),
                append_tokens=LengthDist(dist="lognormal", median=5000, sigma=0.8, max=30000),
                reply_tokens=LengthDist(dist="lognormal", median=120, sigma=0.6, max=4000),
                tool_s=TimeDist(dist="lognormal", median=2.0, sigma=0.5))
    base.update(kw)
    return Agentic(**base)


def task_time(svc: dict, ag: Agentic):
    s = Service(**svc)
    plan = plan_calls(ag, s.context_window, seed=0)
    times, _ = service_times(plan, s, ag, seed=0)
    return task_summary(times, plan).as_dict()


def test_ten_times_faster_decode_is_not_ten_times_faster_tasks():
    ag = agentic()
    f, s = task_time(FRONTIER, ag), task_time(FAST, ag)
    decode_ratio = FAST["decode_tok_s"] / FRONTIER["decode_tok_s"]
    task_ratio = f["task_p50_s"] / s["task_p50_s"]
    assert decode_ratio > 10 and task_ratio < 2.0 and task_ratio < 0.15 * decode_ratio
    # the small window compacts, the 1M one does not; tools are the biggest share of the fast model's time
    assert s["compactions_per_task"] >= 1 and f["compactions_per_task"] == 0
    assert s["share_tool"] > 0.6 and s["share_compaction"] > 0.05


def test_without_tools_compaction_and_fixed_latency_task_ratio_is_the_decode_ratio():
    """Amdahl the other way: take away everything decode speed does not touch."""
    ag = agentic(tool_s=TimeDist(dist="fixed", value=0))
    bare = {k: v for k, v in FRONTIER.items()} | {"ttft_s": 0.0, "prefill_tok_s": None}
    fast = {k: v for k, v in FAST.items()} | {"ttft_s": 0.0, "prefill_tok_s": None, "context_window": 1_000_000}
    f, s = task_time(bare, ag), task_time(fast, ag)
    ratio = f["task_mean_s"] / s["task_mean_s"]
    assert ratio == pytest.approx(1000 / 67, rel=1e-9)
    # in between: tools back, no compaction: the ratio falls towards 1 as tool time grows
    ratios = []
    for tool in (0.5, 2.0, 8.0):
        ag = agentic(tool_s=TimeDist(dist="fixed", value=tool))
        ratios.append(task_time(bare, ag)["task_mean_s"] / task_time(fast, ag)["task_mean_s"])
    assert 1000 / 67 > ratios[0] > ratios[1] > ratios[2] > 1


def test_compaction_layout_by_hand():
    ag = agentic(tasks=1, turns=LengthDist(dist="fixed", value=6), first_prompt_tokens=LengthDist(dist="fixed", value=40),
                 append_tokens=LengthDist(dist="fixed", value=30), reply_tokens=LengthDist(dist="fixed", value=10),
                 summary_tokens=5, reread_tokens=7, compaction_prompt_tokens=3, compact_at=0.8,
                 context_window=150)
    p = plan_calls(ag, 150, seed=0)
    # contexts: 0 -> 50 (40 + 10) -> 90 -> 130; the next turn would pass 0.8 x 150 = 120: compact
    # (reads 130, writes 5), then the turn prefills 5 + 7 + 30 = 42 -> 52 -> 92 -> compact again
    assert list(p.kind) == [0, 0, 0, COMPACTION, 0, 0, COMPACTION, 0]
    assert list(p.ctx_before) == [0, 50, 90, 130, 0, 52, 92, 0]
    assert list(p.new) == [40, 30, 30, 3, 42, 30, 3, 42] and list(p.output) == [10, 10, 10, 5, 10, 10, 5, 10]
    assert not p.cache_after[3] and not p.cache_after[-1] and p.cache_after[0]
    assert p.tool_after[-1] == 0 and (p.tool_after[p.kind == COMPACTION] == 0).all()


SCEN = """
name: ag
model: gpt-oss-120b
deployment: {hardware: cs3, count: 2, precision: {weights: mxfp4, kv: fp8}, prefill_chunk_tokens: 8192}  # KV for 6 x 128K
workload:
  context_tokens: 131072
  agentic:
    tasks: 24
    agents: AGENTS
    turns: {dist: uniform, low: 10, high: 20}
    first_prompt_tokens: {dist: fixed, value: 20000}
    append_tokens: {dist: lognormal, median: 6000, sigma: 0.5}
    reply_tokens: {dist: lognormal, median: 200, sigma: 0.5}
    tool_s: {dist: lognormal, median: 2.0, sigma: 0.5}
    kv_between_turns: MODE
seed: 3
"""


def run_point(loaded, pt):
    result, res = run_result(loaded, pt)
    return result_row(result), res


def sim(write, mode, agents=4):
    p = write("ag.yaml", SCEN.replace("MODE", mode).replace("AGENTS", str(agents)))
    loaded = load(p)
    return run_point(loaded, loaded.points[0])


@pytest.mark.parametrize("mode", ["keep", "drop", "offload"])
def test_simulated_tasks_obey_the_invariants_and_are_deterministic(write, mode):
    row, res = sim(write, mode)  # the engine checks Little, conservation, KV and task parts itself
    row2, _ = sim(write, mode)
    assert row == row2
    t = res.tasks
    assert np.allclose(sum(t.parts.values()), t.end - t.start)
    assert row["tasks"] == 24 and sum(row[f"share_{p}"] for p in PARTS) == pytest.approx(1.0)
    assert row["kv_occupancy_peak"] <= 1.0 and row["cost_usd_per_task"] > 0
    if mode != "offload":
        assert row["share_kv_transfer"] == 0
    else:
        assert row["share_kv_transfer"] > 0


def test_keeping_kv_saves_prefill_but_holds_sram(write):
    keep, kept = sim(write, "keep")
    drop, dropped = sim(write, "drop")
    assert keep["share_prefill"] < drop["share_prefill"]  # drop re-prefills the whole context each turn
    # a kept context is the next call's cached prefix (prefix caching's accounting): every prompt
    # token is prefilled or cached, the same calls either way, and keep prefills what drop does less
    # the cached tokens, which are priced as cached input
    k, d = kept.requests, dropped.requests
    assert ((k.prompt_tokens + k.cached_tokens) == (d.prompt_tokens + d.cached_tokens)).all()
    assert d.cached_tokens.sum() == 0 and k.cached_tokens.sum() > 0
    assert kept.summary.prefill_tokens == dropped.summary.prefill_tokens - k.cached_tokens.sum()
    assert keep["throughput_cached_in_tok_s"] > 0 and drop["throughput_cached_in_tok_s"] == 0
    assert keep["cost_usd_per_mtok_cached_in"] == pytest.approx(0.1 * keep["cost_usd_per_mtok_in"])
    assert keep["kv_occupancy_avg"] > drop["kv_occupancy_avg"]  # keep holds it while tools run
    # many agents on the same SRAM: kept KV is evicted to admit other tasks' calls
    crowded, _ = sim(write, "keep", agents=12)
    assert crowded["kv_evictions"] > 0 and keep["kv_evictions"] == 0


def test_poisson_tasks_are_served_at_their_arrival_rate(write):
    """An open stream of tasks on a replica with room to spare: tasks per hour = the arrival
    rate (a stable queue serves what arrives), within the Poisson count's noise."""
    text = SCEN.replace("MODE", "drop").replace("    agents: AGENTS\n", "    rate_per_s: 0.05\n") \
        .replace("tasks: 24", "tasks: 200")
    p = write("ag.yaml", text)
    loaded = load(p)
    row, res = run_point(loaded, loaded.points[0])
    assert row["tasks"] == 200
    assert row["tasks_per_hour"] == pytest.approx(0.05 * 3600, rel=0.15)
    assert row["share_queue"] < 0.01  # no waiting at this load


def test_plan_run_writes_one_row_per_task(write, tmp_path):
    from click.testing import CliRunner

    from planner.cli import main
    import pandas as pd
    p = write("ag.yaml", SCEN.replace("MODE", "keep").replace("AGENTS", "4"))
    r = CliRunner().invoke(main, ["run", str(p), "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "tasks: p50" in r.output
    t = pd.read_csv(tmp_path / "o" / "tasks.csv")
    assert len(t) == 24
    parts = t[[c for c in t.columns if c.endswith("_s") and c not in ("start_s", "end_s", "duration_s")]]
    assert (parts.sum(axis=1) - t["duration_s"]).abs().max() < 1e-3


# ------------------------------------------------------------------ the field observations (agentic-coding.yaml)
def _shipped(groups):
    from pathlib import Path

    from planner.sweeps.tables import row
    loaded = load(Path(__file__).parent.parent / "scenarios" / "agentic-coding.yaml")
    rows = {}
    for p in loaded.points:
        if p.group in groups:
            r = row(run_result(loaded, p)[0])
            rows[(p.group, r["model"], str(p.values.get("workload.agentic.cpus")), r["decode_tok_s_per_user_p50"])] = r
    return rows


def test_agentic_coding_reproduces_the_field_ratios_from_its_stated_inputs():
    """The seed's equity-research task (3:09 on GPT-5.5 vs 2:19 on Spark: 1.36) within 20%, and
    OpenAI's snake-game demo (43 s vs 9 s: 4.8x for ~15x decode) within 25%, from the inputs
    scenarios/agentic-coding.yaml states with their sources. Spark compacts in the equity task
    (128K window) and GPT-5.5 (1M) does not, as the seed reports; tools are the majority of
    Spark's time and more of GPT-5.5's than decode ("far more dependent on CPUs than the GPU")."""
    r = _shipped({"equity-research", "snake-game"})
    frontier = r[("equity-research", "gpt-5.5-fast", "None", 97.5)]
    spark = r[("equity-research", "gpt-5.3-codex-spark", "None", 1000)]
    assert frontier["task_p50_s"] / spark["task_p50_s"] == pytest.approx(189 / 139, rel=0.20)
    assert spark["compactions_per_task"] >= 1 and frontier["compactions_per_task"] == 0
    assert spark["share_tool"] > 0.5 and frontier["share_tool"] > frontier["share_decode"]
    codex = r[("snake-game", "gpt-5.3-codex", "None", 65)]
    fast = r[("snake-game", "gpt-5.3-codex-spark", "None", 1000)]
    assert codex["task_p50_s"] / fast["task_p50_s"] == pytest.approx(43 / 9, rel=0.25)
    assert fast["decode_tok_s_per_user_p50"] / codex["decode_tok_s_per_user_p50"] == pytest.approx(15, rel=0.05)


def test_with_few_cpus_tasks_stop_getting_faster_with_decode_speed():
    """cpu-curve: 16 agents. Unlimited CPUs: 100 -> 10,000 tok/s keeps shortening tasks; on 8
    CPUs the tool calls saturate them and the curve is flat from 300 tok/s; on 4, flat from 100."""
    r = _shipped({"cpu-curve"})
    t = {(cpus, v): row["task_p50_s"] for (_, _, cpus, v), row in r.items()}
    assert t[("None", 100)] > 1.5 * t[("None", 10000)]
    assert t[("8", 300)] == pytest.approx(t[("8", 10000)], rel=0.02)
    assert t[("4", 100)] == pytest.approx(t[("4", 10000)], rel=0.02)
    assert t[("4", 10000)] > 1.8 * t[("8", 10000)] > 1.5 * t[("None", 10000)]
    busy = r[("cpu-curve", "gpt-5.3-codex-spark", "8", 10000)]
    assert busy["share_tool_wait"] > 0.4  # most of the time lost waiting for a CPU
