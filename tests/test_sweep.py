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
    # power follows load: 4 CS-3 systems idle at 0.3 x 23 kW and add (23 - 6.9) kW x activity
    # (hardware_specs/cs3.yaml), paid at PUE 1.5 and $0.1/kWh
    u = row["activity"]
    assert 0 < u <= 1
    kw = 4 * (6.9 + (23 - 6.9) * u)
    usd_h = 4 * 1e6 / (4 * 8760) + kw * 1.5 * 0.1
    assert row["power_kw"] == pytest.approx(kw) and row["facility_power_kw"] == pytest.approx(1.5 * kw)
    assert row["usd_per_h"] == pytest.approx(usd_h)
    # the default price ratio (output 4 : fresh input 1): one fresh-input-token equivalent costs
    # $/h over (4 x output + input) tokens an hour
    out_h, in_h = row["throughput_out_tok_s"] * 3600, row["throughput_in_tok_s"] * 3600
    unit = usd_h / (4 * out_h + in_h)
    assert row["cost_usd_per_mtok_out"] == pytest.approx(4 * unit * 1e6)
    assert row["cost_usd_per_mtok_in"] == pytest.approx(unit * 1e6)
    assert row["cost_usd_per_mtok_blended"] == pytest.approx(usd_h / (out_h + in_h) * 1e6)
    assert row["cost_usd_per_request"] == pytest.approx(usd_h / (row["throughput_req_s"] * 3600))
    assert row["throughput_out_tok_s_per_device"] == pytest.approx(row["throughput_out_tok_s"] / 4)
    assert row["power_kw_nameplate"] == 92 and row["capex_usd"] == 4e6


def conserved(row: dict) -> float:
    """$/h rebuilt from every token kind's unit cost: must equal usd_per_h."""
    hours = 3600.0  # utilisation 1
    return (row["throughput_out_tok_s"] * hours * row["cost_usd_per_mtok_out"]
            + row["throughput_in_tok_s"] * hours * row["cost_usd_per_mtok_in"]) / 1e6


def test_costs_add_up_to_the_hour_on_every_row_of_a_sweep(write):
    """Fails if any token kind is charged a share of $/h that is not its own (the old decode-share
    split charged input nothing on wafers and let output's $/M fall while $/h rose)."""
    p = write("s.yaml", BASE.replace("USERS", "8") + """
sweep:
  - name: g
    axes:
      deployment.hardware: [cs3, b200, h100]
      workload.context_tokens: [8192, 32768]
      hardware.bonded_sram.layers: [0, 2]
    skip:
      - {deployment.hardware: [b200, h100], hardware.bonded_sram.layers: 2}
""".replace("count: 4", "count: null"))
    loaded = load(p)
    rows = [result_row(sweep.evaluate(loaded, pt)) for pt in expand(loaded)]
    costed = [r for r in rows if r["feasible"]]
    assert len(costed) >= 6
    for r in costed:
        assert conserved(r) == pytest.approx(r["usd_per_h"], rel=1e-12)
        # the ratio is the same on every row: a cheaper output token is a cheaper hour per token
        assert r["cost_usd_per_mtok_out"] == pytest.approx(4 * r["cost_usd_per_mtok_in"], rel=1e-12)


def test_rates_are_per_deployment_on_a_three_replica_case(write):
    """Three replicas of four wafers: every rate column is the deployment's (three times one
    replica's), by hand from the per-replica capacity."""
    p = write("s.yaml", """
name: s
model: llama-3.1-70b
deployment: {hardware: cs3, count: 4, replicas: 3}
workload: {context_tokens: 8192, output_tokens: 256, arrival: {process: poisson, rate_per_s: 30}, requests: 600}
slo: {ttft_p99_s: 2.0}
capacity: {search: true, max_probes: 4, stop_at_target: false}
""")
    loaded = load(p)
    row = result_row(sweep.evaluate(loaded, expand(loaded)[0]))
    assert row["replicas"] == 3 and row["devices"] == 12
    per = row["capacity_req_s_per_replica"]
    assert row["capacity_req_s"] == pytest.approx(3 * per)
    assert row["throughput_req_s"] == pytest.approx(3 * per)
    assert row["throughput_out_tok_s"] == pytest.approx(3 * per * 256)
    assert row["throughput_out_tok_s_per_device"] == pytest.approx(row["throughput_out_tok_s"] / 12)
    # and what each replica carried: one third of it
    assert row["throughput_req_s_per_replica"] == pytest.approx(per)
    assert row["throughput_out_tok_s_per_replica"] == pytest.approx(per * 256)
    assert row["throughput_in_tok_s_per_replica"] == pytest.approx(row["throughput_in_tok_s"] / 3)
    assert row["users_per_replica"] == row["capacity_users_per_replica"] == pytest.approx(row["capacity_users"] / 3)
    assert row["cost_usd_per_request"] == pytest.approx(row["usd_per_h"] / (row["throughput_req_s"] * 3600))


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
