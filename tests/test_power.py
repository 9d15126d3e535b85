"""Power that follows load, by hand: idle, a memory-bound decode step, a compute-bound prefill,
the engine's integral against the closed form and the utilisation law; the facility power cap's
sizing; $/h with load-following energy (README "Power")."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from planner import catalog
from planner.config.errors import ConfigError
from planner.config.schema import Economics, LengthDist, PowerSpec
from planner.physics import hardware
from planner.plan import point as sweep
from planner.plan.economics import power
from planner.plan.estimate import estimate
from planner.plan.frontier import frontier
from planner.plan.scenario import expand, load
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds, StepRounds
from planner.sim.workload import Sampler
from planner.sweeps.tables import row as result_row
from planner.physics.point import Config, build_point
from tests.conftest import device
from tests.test_perf import model_for


def test_h100_power_at_idle_and_at_saturation_by_hand():
    """hardware_specs/h100.yaml: 1,275 W per GPU (a DGX H100's 10.2 kW / 8); idle 0.25 of it,
    load 0.82 (the measured 8.4 kW per 8-GPU node). Eight GPUs on eight one-GPU systems."""
    d = device("h100")
    assert power(d, 8, 0.0).kw == pytest.approx(8 * 1.275 * 0.25)  # 2.55 kW: weights loaded, nothing to do
    assert power(d, 8, 1.0).kw == pytest.approx(8 * 1.275 * 0.82)  # 8.364 kW: compute busy the whole time
    assert power(d, 8, 0.5).kw == pytest.approx(8 * 1.275 * (0.25 + 0.5 * (0.82 - 0.25)))
    assert power(d, 8, 0.5).nameplate_kw == pytest.approx(10.2)  # what a facility provisions, whatever the load


def test_memory_bound_decode_draws_its_compute_time_plus_a_share_of_the_memory_time():
    """Llama 3.1 8B BF16 on one H100, batch 1 at 2,048 tokens: the step reads the weights and KV
    at 0.90 x 3.35 TB/s (m) and multiplies them in far less time (c); the GPU is active, kernel by
    kernel (GEMMs, attention), min(roofline, c + 0.35 m): here c + 0.35 m of the round, the rest
    (per-layer fixed kernel time) idle."""
    sm, s, d, p = model_for("llama-3.1-8b", "h100", 1)
    r = sm.decode_round(1, 2048)
    kv = 2048 * s.kv_bytes_per_token("bf16").sum()
    m = (p.weight_bytes + kv) / (d.mem_bw_bytes_per_s * d.mem_efficiency)
    flops = 2 * s.layer_active_params.sum() + s.head_flops + s.decode_attn_flops(2048).sum()
    c = flops / (d.peak_flops["fp16"] * d.compute_efficiency)  # the ALUs busy (a thin GEMM waits on data)
    assert c < 0.1 * m  # memory bound
    active = c + 0.35 * m
    round_s = m + 32 * d.layer_dense_s + d.step_overhead_s
    assert r.round_s == pytest.approx(round_s, rel=1e-9)
    assert r.stage_active_s[0] == pytest.approx(active, rel=1e-9)
    u = sm.activity(r.stage_active_s / r.round_s)
    assert u == pytest.approx(active / round_s, rel=1e-9)
    # well below the load power: a GPU draws 140 + (680 - 140) x u W, here ~30% of its 700 W TDP
    assert 0.2 < u < 0.45
    assert power(d, 1, u).kw == pytest.approx(1.275 * (0.25 + (0.82 - 0.25) * active / round_s))


def test_compute_bound_prefill_saturates_the_load_power():
    """An 8,192-token prefill chunk on the same GPU: compute time c (at the prefill efficiency)
    dwarfs the weight read, so the GPU is active all of its roofline time; a replica doing back
    to back prefill is active c / (c + fixed) of the time, and draws almost the load power."""
    sm, s, d, p = model_for("llama-3.1-8b", "h100", 1)
    t = sm.prefill(8192)
    flops = 8192 * 2 * s.layer_active_params.sum() + s.head_flops + s.prefill_attn_flops(0, 8192).sum()
    c = flops / (d.peak_flops["fp16"] * d.compute_efficiency)
    assert t.compute_s[0] == pytest.approx(c, rel=1e-9) and t.memory_s[0] < c
    assert t.active_s[0] == pytest.approx(c, rel=1e-12)  # the load power throughout the roofline time
    fixed = 32 * d.layer_dense_s
    u = float(t.active_s[0] / t.occupancy_s[0])
    assert u == pytest.approx(c / (c + fixed), rel=1e-9) and u > 0.98
    assert power(d, 1, u).kw == pytest.approx(1.275 * (0.25 + 0.57 * c / (c + fixed)))


def fixed(v):
    return Sampler(LengthDist(dist="fixed", value=v))


@pytest.mark.parametrize("hw", ["h100", "cs3"])
def test_the_engine_integrates_the_activity_the_closed_form_predicts(hw):
    """One user in a closed loop (3,584-token prompt, 512-token reply): the engine sums each
    round's active time over the run; the closed form takes the decode round plus the user's own
    prefill. They are the same rounds, so they agree (a wafer serving one user idles: one layer
    region of 32 works at a time, and the step overhead)."""
    cfg = Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware(hw), count=1, context=4096,
                 prompt=3584, output=512, batch=1)
    b = build_point(cfg)
    est = estimate(cfg, b)
    res = simulate(SimSpec(requests=30, process="closed", users=1, prompt=fixed(3584), output=fixed(512)),
                   StepRounds(b))
    sim = b.steps.activity(res.summary.stage_activity)
    assert sim == pytest.approx(est.activity, rel=0.03)
    assert 0 < sim < res.summary.stage_util_max + 1e-12  # active time is busy time, weighted


def test_activity_of_an_oracle_replica_is_its_utilisation():
    """ConstantRounds is busy (at full load) exactly while it works: its activity is its
    utilisation, lambda x S = 7/s x 0.1 s = 0.7 (the utilisation law), within sampling noise."""
    res = simulate(SimSpec(requests=20000, rate_per_s=7.0, prompt=fixed(1), output=fixed(100), max_batch=1, seed=1),
                   ConstantRounds(0.001))
    s = res.summary
    assert s.stage_activity == s.stage_utilisation
    assert s.stage_activity[0] == pytest.approx(0.7, rel=0.03)


CAP = """
name: c
model: MODEL
deployment: {hardware: HW, count: COUNT}
workload: {context_tokens: 8192, output_tokens: 1024, concurrent_users: 4}
economics: {pue: 1.5, usd_per_kwh: 0.1, facility_power_cap: CAP_VALUE}
"""


def cap_row(write, model="llama-3.1-70b", hw="cs3", count=4, cap="1 MW", simulate=False):
    text = CAP.replace("MODEL", model).replace("HW", hw).replace("COUNT", str(count)).replace("CAP_VALUE", cap)
    loaded = load(write("c.yaml", text))
    return result_row(sweep.evaluate(loaded, expand(loaded)[0], simulate=simulate))


def test_power_cap_sizing_by_hand(write):
    """1 MW at PUE 1.5 on CS-3 (23 kW nameplate): floor(1e6 / 34,500) = 28 systems, 7 replicas
    of 4 wafers; their tokens are 7 x one replica's; they draw 28 x (6.9 + 16.1 u) kW x 1.5."""
    r = cap_row(write)
    assert r["replicas"] == 1 and r["cap_replicas"] == 7 and r["cap_devices"] == 28
    assert r["cap_out_tok_s"] == pytest.approx(7 * r["throughput_out_tok_s"])
    u = r["activity"]
    assert r["cap_facility_mw"] == pytest.approx(28 * (6.9 + 16.1 * u) * 1.5 / 1000)
    assert r["cap_facility_mw"] <= 1.0 and r["cap_lower_bound"] is False
    # exactly 28 systems' worth holds 28; a watt less holds 27 -> 6 replicas
    assert cap_row(write, cap=f"{28 * 23000 * 1.5:.0f} W")["cap_replicas"] == 7
    assert cap_row(write, cap=f"{28 * 23000 * 1.5 - 1:.0f} W")["cap_replicas"] == 6


def test_a_cap_of_exactly_n_systems_holds_n_despite_rounding(write):
    """75.9 kW at PUE 1.1 is exactly 3 CS-3 (3 x 23 kW x 1.1), but 75.9e3 / (23e3 x 1.1) is
    2.9999999999999996 in floating point: still 3 systems, 3 one-wafer replicas."""
    text = CAP.replace("MODEL", "llama-3.1-8b").replace("HW", "cs3").replace("COUNT", "1") \
        .replace("pue: 1.5", "pue: 1.1").replace("CAP_VALUE", "75.9 kW")
    loaded = load(write("e.yaml", text))
    assert result_row(sweep.evaluate(loaded, expand(loaded)[0], simulate=False))["cap_replicas"] == 3


def test_power_cap_counts_whole_systems_of_several_devices(write):
    """CS-4: 2 wafers per 46 kW system. 1 MW / (46 kW x 1.5) = 14 systems = 28 wafers: 9 replicas
    of 3 wafers (27); the 28th wafer's system is provisioned and idles."""
    r = cap_row(write, model="llama-3.1-8b", hw="cs4", count=3)
    assert (r["cap_replicas"], r["cap_devices"]) == (9, 27)
    u = r["activity"]
    assert r["cap_facility_mw"] == pytest.approx((14 * 13.8 + 27 / 2 * (46 - 13.8) * u) * 1.5 / 1000)


def test_no_cap_no_cap_columns_and_a_stopped_search_is_a_lower_bound(write):
    loaded = load(write("n.yaml", CAP.replace("MODEL", "llama-3.1-8b").replace("HW", "cs3").replace("COUNT", "1")
                        .replace(", facility_power_cap: CAP_VALUE", "")))
    assert "cap_replicas" not in result_row(sweep.evaluate(loaded, expand(loaded)[0], simulate=False))
    # a replica that carries all 4 users stops the search there: it might carry more
    text = CAP.replace("MODEL", "llama-3.1-8b").replace("HW", "cs3").replace("COUNT", "1") \
        .replace("CAP_VALUE", "1 MW") + "slo: {decode_tok_s_per_user_p50: 1}\ncapacity: {search: true}\n"
    loaded = load(write("s.yaml", text.replace("context_tokens: 8192", "context_tokens: 2048")
                        .replace("output_tokens: 1024", "output_tokens: 64")))
    r = result_row(sweep.evaluate(loaded, expand(loaded)[0]))
    assert r["capacity_limit"] == "target" and r["cap_lower_bound"] is True


def test_hour_cost_with_power_that_follows_load_by_hand(write):
    """Serving half the hours (utilisation 0.5) with hosting billed on the nameplate: energy is
    the operating power half the hour and idle power the other half; and the hour still adds up
    over the token kinds."""
    text = CAP.replace("MODEL", "llama-3.1-70b").replace("HW", "cs3").replace("COUNT", "4") \
        .replace("facility_power_cap: CAP_VALUE", "utilisation: 0.5, hosting_usd_per_kw_month: 100")
    loaded = load(write("h.yaml", text))
    r = result_row(sweep.evaluate(loaded, expand(loaded)[0], simulate=False))
    u = r["activity"]
    kw_op, kw_idle = 4 * (6.9 + 16.1 * u), 4 * 6.9
    usd_h = 4 * 1e6 / (4 * 8760) + (0.5 * kw_op + 0.5 * kw_idle) * 1.5 * 0.1 + 92 * 100 * 12 / 8760
    assert r["power_kw"] == pytest.approx(kw_op) and r["usd_per_h"] == pytest.approx(usd_h)
    served = 0.5 * 3600
    rebuilt = (r["throughput_out_tok_s"] * r["cost_usd_per_mtok_out"]
               + r["throughput_in_tok_s"] * r["cost_usd_per_mtok_in"]) * served / 1e6
    assert rebuilt == pytest.approx(r["usd_per_h"], rel=1e-12)
    assert r["tok_s_per_mw"] == pytest.approx(r["throughput_out_tok_s"] / (kw_op * 1.5 / 1000))


def test_a_spec_without_idle_or_load_figures_stays_at_its_nameplate():
    spec = catalog.load_hardware("cs3")
    flat = spec.model_copy(update={"power": PowerSpec(watts=23000, source="nameplate only")})
    d = hardware.resolve(flat)
    assert d.system_idle_w == d.system_load_w == d.system_power_w == 23000
    assert power(d, 3, 0.2).kw == pytest.approx(69) and d.power_source.startswith("nameplate")
    assert "assumption" in device("cs3").power_source  # no published CS-3 figure: said so


def test_idle_above_load_is_an_error_at_the_file_and_line(write, tmp_path):
    (tmp_path / "hardware_specs").mkdir()
    (tmp_path / "hardware_specs" / "hot.yaml").write_text(
        "name: hot\nextends: cs3\npower:\n  watts: 20 kW\n  source: test\n"
        "  idle: {share: 0.9, source: test}\n  load: {share: 0.5, memory_share: 0.5, source: test}\n")
    with pytest.raises(ConfigError) as e:
        load(write("x.yaml", CAP.replace("MODEL", "llama-3.1-8b").replace("HW", "hot").replace("COUNT", "1")
                   .replace("CAP_VALUE", "1 MW")))
    assert "hot.yaml:" in str(e.value) and "idle.share (0.9) above load.share (0.5)" in str(e.value)


def test_a_power_cap_below_one_kilowatt_is_refused(write):
    """A bare number is watts: `facility_power_cap: 100` would be 100 W, a typo for 100 MW."""
    with pytest.raises(ConfigError) as e:
        cap_row(write, cap="100")
    assert any(p.path == "economics.facility_power_cap" and p.line for p in e.value.problems), str(e.value)


def test_more_load_draws_more_power_along_the_frontier():
    """The frontier's power follows its load: from one user to the most that fit, each step up
    the curve keeps the GPU at least as active (more sequences per weight read)."""
    cfg = Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware("h100"), count=1, context=4096,
                 output=512)
    b = build_point(cfg)
    curve = frontier(cfg, b, Economics(), b.placement.max_concurrent)
    kw = np.array([f.power_kw_per_replica for f in curve])
    # the most that fit stay memory bound (KV reads): ~1.45x the one-user power, not the load power
    assert len(kw) > 5 and np.all(np.diff(kw) >= -1e-12) and kw[-1] > 1.4 * kw[0]
    assert math.isclose(kw[0], power(b.device, 1, estimate(dataclasses.replace(cfg, batch=1), b).activity).kw)


def test_the_power_cap_table_keeps_drafted_rows_apart_and_labels_them():
    """A row that assumes speculative decoding and one that does not, same hardware: both
    shown, the drafted one labelled as the other tables label it (not passed off as plain)."""
    from planner.sweeps.report import cap_md
    base = dict(slo_pass=True, context_tokens=8192, hypothetical=False, hardware="cs3", weights_precision="fp4",
                kv_precision="fp8", devices_per_replica=16, cap_replicas=10, cap_facility_mw=90.0,
                cost_usd_per_mtok_out=0.5, power_source="assumed", cap_lower_bound=False,
                decode_tok_s_per_user_p50=600.0)
    df = pd.DataFrame([dict(base, point=0, cap_out_tok_s=2e7),
                       dict(base, point=1, cap_out_tok_s=1e7, decode_tok_s_per_user_p50=2500.0,
                            **{"deployment.spec_decode.draft_tokens": 3, "deployment.spec_decode.acceptance_rate": 0.77})])
    df.loc[0, "deployment.spec_decode.draft_tokens"] = np.nan
    rows = [line for line in cap_md(df, 100e6) if line.startswith("| 8,192 |") or line.startswith("| 8192 |")]
    assert len(rows) == 2, rows
    assert any("fp4/fp8 spec 3@0.77 |" in r and "2,500" in r for r in rows), rows
    assert any("fp4/fp8 |" in r and "600" in r for r in rows), rows
