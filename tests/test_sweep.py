"""Sweep expansion, users -> replicas, economics hand calculation, determinism."""
import math

import pytest

from planner.plan import point as sweep
from planner.sweeps.tables import row as result_row
from planner.plan.scenario import expand, load

BASE = """
name: s
model: llama-3.1-70b
deployment: {hardware: cs3, count: 4}
workload: {context_tokens: 8192, output_tokens: 1024, concurrent_users: USERS}
economics: {amortisation_years: 4, pue: 1.5, usd_per_kwh: 0.1}
"""


def test_product_and_zip(write):
    p = write("s.yaml", BASE.replace("USERS", "10") + """
sweep:
  - name: p
    axes: {deployment.count: [4, 8], workload.output_tokens: [256, 512, 1024]}
  - name: z
    mode: zip
    axes: {deployment.count: [4, 8], workload.output_tokens: [256, 512]}
""")
    pts = expand(load(p))
    assert len(pts) == 6 + 2
    assert [pt.values for pt in pts[6:]] == [{"deployment.count": 4, "workload.output_tokens": 256},
                                            {"deployment.count": 8, "workload.output_tokens": 512}]
    # the zip points repeat two product points: same resolved configuration, same hash
    assert len({pt.config_hash for pt in pts}) == 6


def test_users_need_replicas(write):
    p = write("s.yaml", BASE.replace("USERS", "100"))
    loaded = load(p)
    row = result_row(sweep.evaluate(loaded, expand(loaded)[0]))
    per = row["max_concurrent_sequences"]
    assert row["replicas"] == math.ceil(100 / per) and row["devices"] == 4 * row["replicas"]


def test_economics_hand_calc(write):
    p = write("s.yaml", BASE.replace("USERS", "4"))
    loaded = load(p)
    row = result_row(sweep.evaluate(loaded, expand(loaded)[0]))
    usd_h = 4 * 1e6 / (4 * 8760) + 4 * 23 * 1.5 * 0.1
    assert row["usd_per_h"] == pytest.approx(usd_h)
    assert row["cost_usd_per_mtok_out"] == pytest.approx(usd_h * (1 - row["prefill_share"])
                                                         / (row["throughput_out_tok_s"] * 3600 / 1e6))
    assert row["power_kw"] == 92 and row["capex_usd"] == 4e6


def test_count_null_sizes_one_pipeline_for_the_users(write):
    p = write("s.yaml", BASE.replace("count: 4", "count: null").replace("USERS", "200"))
    loaded = load(p)
    row = result_row(sweep.evaluate(loaded, expand(loaded)[0]))
    assert row["replicas"] == 1 and row["max_concurrent_sequences"] >= 200 and row["batch_per_replica"] == 200


def test_same_scenario_same_csv(tmp_path):
    from planner.sweeps.runner import run
    from tests.conftest import REPO
    a, _ = run(REPO / "scenarios" / "deepseek.yaml", tmp_path / "a", quiet=True, simulate=False)
    b, _ = run(REPO / "scenarios" / "deepseek.yaml", tmp_path / "b", quiet=True, simulate=False)
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    assert a["feasible"].any() and (~a["feasible"]).any()
    baseline = a[a["group"] == "gpu-baselines"]
    assert set(baseline["hardware"]) == {"b200", "gb200-nvl72"}


@pytest.mark.slow
def test_simulated_sweep_same_files_whatever_the_jobs(write, tmp_path):
    from planner.sweeps.runner import run
    from tests.conftest import SIM
    p = write("sim.yaml", SIM.replace("REQUESTS", "400"))
    run(p, tmp_path / "one", quiet=True, jobs=1)
    run(p, tmp_path / "two", quiet=True, jobs=2)
    assert (tmp_path / "one" / "results.csv").read_bytes() == (tmp_path / "two" / "results.csv").read_bytes()
    import pandas as pd
    df = pd.read_csv(tmp_path / "one" / "results.csv")
    assert (df.throughput_source == "sim").all()
    # more load, more waiting
    wait = df[(df["group"] == "wafers") & (df["deployment.kv_policy"] == "wait")].sort_values("workload.arrival.load")
    assert wait.ttft_p99_s.is_monotonic_increasing


def test_request_too_big_for_a_replica_names_the_right_memory(write):
    from planner.plan.point import evaluate
    p = write("big.yaml", """
name: big
model: llama-3.1-70b
deployment: {hardware: h100, count: 8}
workload:
  context_tokens: 8192
  output_tokens: 512
  arrival: {process: poisson, rate_per_s: 1}
  output_dist: {dist: fixed, value: 10000000}
  requests: 20
""")
    loaded = load(p)
    row = result_row(evaluate(loaded, expand(loaded)[0]))
    assert not row["feasible"] and "more than a replica holds" in row["reason"]
    assert row["bottleneck"] == "hbm_capacity"


def test_kv_policy_without_an_external_tier_says_so_not_out_of_sram(write, tmp_path):
    """A wafer spec with no external_memory section cannot swap: the row says that, with
    bottleneck "unsupported" (it was reported as sram_capacity, a memory limit it never hit)."""
    from planner import catalog
    text = (catalog.hardware_dir() / "cs3.yaml").read_text(encoding="utf-8")
    start = text.index("external_memory:")
    end = text.index("\npower:")
    (tmp_path / "hardware_specs").mkdir()
    (tmp_path / "hardware_specs" / "cs3-noext.yaml").write_text(
        text[:start].replace("name: cs3", "name: cs3-noext", 1) + text[end + 1:], encoding="utf-8")
    p = write("s.yaml", BASE.replace("USERS", "4").replace("hardware: cs3", "hardware: cs3-noext, kv_policy: swap")
              + "  \n")
    loaded = load(p)
    row = result_row(sweep.evaluate(loaded, expand(loaded)[0], simulate=True))
    assert not row["feasible"] and row["bottleneck"] == "unsupported"
    assert "kv_policy swap needs an external_memory section in the 'cs3-noext' hardware spec" in row["reason"]
