"""Step-time model against hand calculations and physical monotonicity."""
import numpy as np
import pytest

from planner.analytic import Config, estimate
from planner.config.schema import SpecDecode
from planner.hardware import Infeasible
from planner.perf import StepModel, accepted_per_step
from planner.placement import place

from . import conftest
from .conftest import device, shape


def model_for(name, hw, count, prec="bf16", ctx=2048, **kw):
    s, d = shape(name), device(hw, **kw)
    p = place(s, d, count, prec, prec if prec in ("bf16", "fp8") else "fp8", ctx)
    return StepModel(s, p, d, prec, prec if prec in ("bf16", "fp8") else "fp8"), s, d, p


def test_single_stream_wafer_latency_is_layers_times_layer_latency_plus_hops():
    sm, s, d, p = model_for("llama-3.1-70b", "cs3", 4)
    r = sm.decode_round(1, 2048)
    layer = d.layer_base_s + d.layer_per_khidden_s * 8192 / 1024
    touched = sum(st.layers_touched for st in p.stages)  # 80 layers + one more per mid-layer cut
    vectors = [2 if st.ends_mid_layer else 1 for st in p.stages[:-1]]  # a mid-layer cut carries the partial sum
    assert touched == 80 + sum(v - 1 for v in vectors) and vectors == [2, 1, 2]
    hops = sum(d.io_latency_s + 8192 * 2 * v / d.io_bw_bytes_per_s for v in vectors)
    roof = sm.decode(1, 2048).occupancy_s.sum()
    assert r.token_latency_s == pytest.approx(touched * layer + hops + roof, rel=1e-9)
    assert roof < 0.05 * r.token_latency_s  # a wafer at batch 1 is (almost) pure latency
    assert all(v >= 0 for v in r.parts.values())
    assert r.bottleneck == "pipeline_latency"


def test_gpu_single_stream_is_hbm_roofline_plus_allreduces():
    sm, s, d, p = model_for("llama-3.1-70b", "h100", 8)
    r = sm.decode_round(1, 2048)
    weights = p.weight_bytes / 8 / (d.mem_bw_bytes_per_s * d.mem_efficiency)
    allreduce = 2 * 80 * d.allreduce_s
    assert r.round_s == pytest.approx(weights + allreduce, rel=0.02)
    assert r.bottleneck == "memory_bw"


def test_more_batch_means_slower_users_and_more_throughput():
    sm, *_ = model_for("deepseek-v3", "cs3", 24, "fp8", 8192)
    prev_user, prev_agg = float("inf"), 0.0
    for b in (1, 24, 96, 192):
        _, mixed = sm.steady_round(b, 8192, 7168, 1024)
        user = mixed.accepted_tokens / mixed.round_s
        assert user <= prev_user * (1 + 1e-9) and b * user >= prev_agg
        prev_user, prev_agg = user, b * user


def test_speculative_decoding_acceptance_formula():
    assert accepted_per_step(None) == 1.0
    assert accepted_per_step(SpecDecode(draft_tokens=3, acceptance_rate=0.5)) == pytest.approx(1 + .5 + .25 + .125)


def test_speculative_decoding_speeds_up_a_latency_bound_wafer():
    base = dict(model=conftest.catalog.load_model("llama-3.1-70b"), hardware=conftest.catalog.load_hardware("cs3"),
                count=4, context=2048, batch=1)
    plain = estimate(Config(**base))["decode_tok_s_per_user"]
    sd = SpecDecode(draft_tokens=3, acceptance_rate=0.8, draft_layers=1, draft_params=1e9)
    fast = estimate(Config(**base, spec_decode=sd))["decode_tok_s_per_user"]
    assert 1.5 < fast / plain < accepted_per_step(sd)


def test_native_fp8_doubles_prefill_rate_storage_only_does_not():
    native, *_ = model_for("llama-3.1-70b", "wse3-fp8", 4, "fp8")
    storage, *_ = model_for("llama-3.1-70b", "cs3", 4, "fp8")
    assert native.compute_mode == "native" and storage.compute_mode == "storage"
    a, b = native.prefill(8192).compute_s.sum(), storage.prefill(8192).compute_s.sum()
    assert b == pytest.approx(2 * a)


def test_native_mode_on_16_bit_wafer_is_infeasible():
    with pytest.raises(Infeasible, match="no native fp8"):
        device("cs3").flops_for("fp8", "native")


def test_ttft_single_chunk_single_stage_is_prefill_latency():
    sm, s, d, p = model_for("llama-3.1-8b", "cs3", 1)
    t = sm.prefill(1024)
    assert sm.ttft_s(1024) == pytest.approx(float(t.latency_s[0]) + d.step_overhead_s)


def test_prefill_hides_in_wafer_bubbles_but_adds_on_gpus():
    cfg = dict(model=conftest.catalog.load_model("deepseek-r1"), weights="fp8", context=9216, prompt=8192,
               output=1024)
    gpu = estimate(Config(hardware=conftest.catalog.load_hardware("b200"), count=8, batch=30, **cfg))
    wafer = estimate(Config(hardware=conftest.catalog.load_hardware("cs3"), count=20, batch=30, **cfg))
    assert gpu["prefill_share"] > 0.2
    assert wafer["prefill_share"] == pytest.approx(0.0, abs=1e-9)


def test_bonded_sram_layers_cost_and_power():
    d0, d2 = device("cs3"), device("cs3", layers=2)
    assert d2.capacity_bytes == pytest.approx(d0.capacity_bytes + 220e9)
    assert d2.system_capex_usd == pytest.approx(d0.system_capex_usd + 2 * 150000 / 0.9)
    assert d2.system_power_w == pytest.approx(d0.system_power_w + 4000)
    assert d2.hypothetical


def test_gpu_collectives_dp_attention_for_mla_tp_for_gqa():
    ds, *_ = model_for("deepseek-r1", "gb200-nvl72", 72, "fp8", 8192)
    assert ds.dp_attention and ds.alltoalls.sum() == 58 and ds.allreduces.sum() == 3  # 58 MoE, 3 dense layers
    ll, *_ = model_for("llama-3.1-70b", "h100", 8)
    assert not ll.dp_attention and ll.allreduces.sum() == 160 and ll.alltoalls.sum() == 0
    # an all-to-all of a GPU's own tokens to top-k experts moves active/tp of a ring all-reduce's bytes
    t = ds._times(np.zeros(1), 1000.0, np.zeros(1))
    ring = 2 * 71 / 72 * 1000 * 7168 * 2
    a2a = 2 * (1000 * 7168 * 2 / 72) * 8 * 71 / 72
    assert t.link_s[0] == pytest.approx((3 * ring + 58 * a2a) / ds.dev.scale_up_bw_bytes_per_s)


def test_infeasible_rows_name_what_limited_them():
    base = dict(model=conftest.catalog.load_model("deepseek-v3"), context=8192)
    mem = estimate(Config(hardware=conftest.catalog.load_hardware("cs3"), count=8, **base))
    assert not mem["fits"] and mem["bottleneck"] == "sram_capacity"
    native = estimate(Config(hardware=conftest.catalog.load_hardware("cs3"), weights="fp8", mode="native", **base))
    assert not native["fits"] and native["bottleneck"] == "unsupported" and "no native fp8" in native["reason"]
    gpu = estimate(Config(hardware=conftest.catalog.load_hardware("h100"), count=8, **base))
    assert not gpu["fits"] and gpu["bottleneck"] == "hbm_capacity"
