"""Step-time model against hand calculations and physical monotonicity."""
import math

import numpy as np
import pytest

from planner.physics.point import Config
from planner.plan.estimate import estimate
from planner.config.schema import SpecDecode
from planner.physics.hardware import Infeasible
from planner.physics.step import StepModel, accepted_per_step
from planner.physics.placement import place

from tests import conftest
from tests.conftest import device, shape


def model_for(name, hw, count, prec="bf16", ctx=2048, **kw):
    s, d = shape(name), device(hw, **kw)
    p = place(s, d, count, prec, prec if prec in ("bf16", "fp8") else "fp8", ctx)
    return StepModel(s, p, d, prec, prec if prec in ("bf16", "fp8") else "fp8"), s, d, p


def test_dense_wafer_compute_is_cores_times_simd_times_clock_not_the_claim():
    spec = conftest.catalog.load_hardware("cs3")
    c = spec.compute.cores
    assert (c.cores, c.simd_width, c.flop_per_lane) == (900_000, 8, 2.0)
    d = device("cs3")
    assert d.peak_flops["fp16"] == pytest.approx(900_000 * 8 * 2 * c.clock)
    assert spec.compute.claimed_fp16 == pytest.approx(125e15)  # kept, labelled, unused
    assert d.peak_flops["fp16"] < 0.3 * spec.compute.claimed_fp16
    lo, hi = d.clock_range
    assert lo == pytest.approx(c.clock_low / c.clock) and hi == pytest.approx(c.clock_high / c.clock)
    assert device("wse3-fp4").peak_flops["fp4"] == pytest.approx(4 * d.peak_flops["fp16"])


def test_single_stream_wafer_latency_from_layer_regions_by_hand():
    """Llama 3.1 8B on one CS-3, batch 1: 32 layers one after another, each taking the busiest
    core's time (read everything it holds, or multiply it once by the token) plus the fabric."""
    sm, s, d, p = model_for("llama-3.1-8b", "cs3", 1)
    r = sm.decode_round(1, 2048)
    st = p.stages[0]
    kv_read = 2048 * s.kv_bytes_per_token("bf16").sum()
    t_mem = (st.weight_bytes + kv_read) / (d.mem_bw_bytes_per_s * d.mem_efficiency)
    params = s.layer_params.sum() + s.head_params  # the lm head sits on the (only) stage
    attn = s.decode_attn_flops(2048).sum()
    t_comp = (2 * params / d.peak_flops["fp16"] + attn / d.peak_flops["fp16"]) / d.decode_efficiency
    fabric = d.layer_base_s + d.layer_per_khidden_s * 4096 / 1024
    expected = 32 * (max(t_mem, t_comp) + fabric) + d.step_overhead_s
    assert r.token_latency_s == pytest.approx(expected, rel=1e-9)
    assert r.round_s == pytest.approx(expected, rel=1e-9)
    assert r.microbatches == 1  # one sequence


def test_launch_software_layer_time_follows_the_layers_bytes_by_hand():
    """The 2024-08 launch profile: each layer also costs its weight bytes x ``layer_per_gb``
    (a layer region that did not grow with the layer), so Llama 3.1 70B on 4 x CS-3 pays
    ~141 GB x per-GB on top of today's software, and the 8B ~15 GB x per-GB."""
    for name, count in (("llama-3.1-8b", 1), ("llama-3.1-70b", 4)):
        now, s, d, p = model_for(name, "cs3", count)
        launch, *_ = model_for(name, "cs3", count, software="launch-2024-08")
        dl = device("cs3", software="launch-2024-08")
        assert dl.layer_per_gb_s > 0 and d.layer_per_gb_s == 0
        layer_gb = s.layer_params.sum() * 2 / 1e9  # bf16, lm head and embedding excluded
        extra = launch.decode_round(1, 2048).token_latency_s - now.decode_round(1, 2048).token_latency_s
        assert extra == pytest.approx(layer_gb * dl.layer_per_gb_s, rel=1e-9)


def test_wafer_batching_fills_layer_regions_before_it_costs_latency():
    """Up to one micro-batch per layer region, more users cost (almost) nothing per user: each
    region works on another micro-batch while a token crosses the others."""
    sm, *_ = model_for("llama-3.1-8b", "cs3", 1)
    one, full = sm.decode_round(1, 2048), sm.decode_round(32, 2048)
    assert full.microbatches == 32
    assert full.round_s == pytest.approx(one.round_s, rel=0.02)
    over = sm.decode_round(256, 2048)  # 8 sequences per micro-batch: compute grows
    assert over.round_s > 1.5 * one.round_s


def test_moe_layer_on_a_wafer_costs_a_full_pass_over_its_cores():
    """A touched expert's cores multiply everything they hold even for one token, so per-layer
    time at batch 1 does not shrink with sparsity (the floor is resident, not active, params)."""
    sm, s, d, p = model_for("gpt-oss-120b", "cs3", None, "mxfp4")
    t = sm.decode(1, 2048)
    resident = sm.F @ s.layer_params
    resident = resident + np.array([st.holds_head for st in p.stages]) * s.head_params
    floor = 2 * resident / (d.peak_flops["fp16"] * d.decode_efficiency)
    assert np.all(t.compute_s >= floor * (1 - 1e-12))
    assert s.active_params < 0.05 * s.total_params


def test_gpu_batch_1_step_from_its_parts():
    """Llama 3.1 70B BF16 on 8 x H100 (TP8), batch 1: HBM read of the weights + two all-reduces
    per layer (one token's 16 kB activation: 3.56 us measured for 8 GPUs at 16,384 bytes, the
    spec's table) + the fixed per-layer kernel time + the step overhead."""
    sm, s, d, p = model_for("llama-3.1-70b", "h100", 8)
    r = sm.decode_round(1, 2048)
    kv = 2048 * s.kv_bytes_per_token("bf16").sum() * p.kv_replication
    memory = (p.weight_bytes + kv) / 8 / (d.mem_bw_bytes_per_s * d.mem_efficiency)
    assert d.allreduce_curve.seconds(8, 8192 * 2) == pytest.approx(3.559e-6, rel=1e-9)
    collectives = 2 * 80 * 3.559e-6
    layers = 80 * d.layer_dense_s
    assert r.round_s == pytest.approx(memory + collectives + layers + d.step_overhead_s, rel=0.01)
    assert d.layer_dense_s > 0  # calibrated: real kernels pay a fixed time per layer


def test_gpu_gemms_and_attention_are_kernels_run_in_turn():
    """A GPU step's GEMMs (weight reads) and attention (KV reads) are separate kernels run one
    after the other, each bound on its own: compute-bound GEMMs do not hide attention's KV reads
    (one roofline over the whole step would give max(3.1 w, 3 w) = 3.1 w here, not 5 w)."""
    sm, s, d, p = model_for("llama-3.1-70b", "h100", 8)
    assert d.mem_efficiency == pytest.approx(0.90)  # measured streaming reads, not fitted
    w = float(sm.weights[0] / sm.bw[0])  # the weights' read: 8 GPUs at 90% of 3.35 TB/s each
    assert w == pytest.approx(p.weight_bytes / (8 * 3.35e12 * 0.90))
    gemm, attn, kv_s = 3 * w, 0.1 * w, 2 * w  # compute-bound GEMMs, KV-bound attention
    kv_bytes = kv_s * float(sm.bw[0]) / p.kv_replication
    t = sm._times(np.array([gemm + attn]), 1.0, np.array([kv_bytes]), np.array([attn]))
    assert float(t.occupancy_s[0] - t.fixed_s[0] - t.link_s[0]) == pytest.approx(gemm + kv_s)
    # the GEMMs' 3 w are compute, attention's 2 w memory (a bottleneck split by kernel), and power
    # counts each kernel's own roofline: min(3 w, 3 w + m w) + min(2 w, 0.1 w + m 2 w)
    m = d.memory_power_share
    assert float(t.compute_bound_s[0]) == pytest.approx(gemm)
    assert float(t.active_s[0]) == pytest.approx(gemm + min(kv_s, attn + m * kv_s))
    # memory-bound GEMMs and compute-bound attention: weights, then attention's arithmetic
    t = sm._times(np.array([0.5 * w + 2 * w]), 1.0, np.array([0.1 * w * float(sm.bw[0]) / p.kv_replication]),
                  np.array([2 * w]))
    assert float(t.occupancy_s[0] - t.fixed_s[0] - t.link_s[0]) == pytest.approx(w + 2 * w)


def test_gpu_moe_pays_its_own_per_layer_time_and_ep_imbalance():
    sm, s, d, p = model_for("deepseek-r1", "b200", 8, "fp8", 8192)
    moe_layers, dense_layers = 58, 3
    # every layer is latent attention (MLA): its extra kernels cost layer_mla each, on top
    assert d.layer_mla_s > 0  # fitted on the B200 family (README "Calibration")
    assert sm.layer_fixed[0] == pytest.approx(moe_layers * d.layer_moe_s + dense_layers * d.layer_dense_s
                                              + (moe_layers + dense_layers) * d.layer_mla_s)
    # a GQA MoE model pays no MLA time: 94 MoE layers of layer_moe
    gqa = model_for("qwen3-235b-a22b", "b200", 8, "fp8", 8192)[0]
    assert gqa.layer_fixed[0] == pytest.approx(94 * d.layer_moe_s)
    # the busiest GPU's routed-expert work is ep_imbalance times the mean, in grouped GEMMs that
    # run at expert_efficiency of the dense ones
    t1 = sm._compute_s(1000.0, np.zeros(1), 0.0, 1.0)
    dense = 1000 * (sm.active2 - sm.expert2)
    experts = 1000 * d.ep_imbalance * sm.expert2 / d.expert_compute_efficiency
    assert t1[0] == pytest.approx(float((dense[0] + experts[0]) / sm.peak_flops / 8))
    assert d.ep_imbalance >= 1 and 0 < d.expert_compute_efficiency <= 1


def test_attention_runs_at_the_kv_precision_not_the_weights():
    """Achievable peaks: the datasheet's per precision times what kernels reach of it (fitted)."""
    b = device("b200")
    fp8, fp4 = b.peak_flops["fp8"] * b.achievable["fp8"], b.peak_flops["fp4"] * b.achievable["fp4"]
    assert b.attention_flops_for("nvfp4", "fp8", "auto") == pytest.approx(min(fp8, fp4))
    assert b.attention_flops_for("fp8", "bf16", "auto") == pytest.approx(b.peak_flops["fp16"])
    assert b.flops_for("nvfp4", "auto")[0] == pytest.approx(fp4)
    assert b.peak_flops["fp4"] == pytest.approx(9e15)  # the claim stays as published
    assert 0 < b.achievable["fp4"] < 1


def test_attention_with_an_fp8_kv_runs_at_the_measured_speed_up():
    """An FP8 KV: B200 decode attention at min(FP8 peak x achievable, BF16 x 1.96), its prefill
    at BF16 x 1.23; H100/H200 decode at BF16 x 1.12, prefill x 1.18 (TensorRT-LLM's kernels,
    measured); a 16-bit KV at the BF16 rate; a spec without measured speed-ups (CS-3, FP8
    wafer) at the KV's class rate."""
    b, h = device("b200"), device("h200")
    bf16 = b.peak_flops["fp16"]
    assert b.attention_flops_for("nvfp4", "fp8", "auto", "decode") == pytest.approx(
        min(b.peak_flops["fp8"] * b.achievable["fp8"], bf16 * 1.96))
    assert b.attention_flops_for("nvfp4", "fp8", "auto", "prefill") == pytest.approx(2.25e15 * 1.23)
    assert h.attention_flops_for("fp8", "fp8", "auto", "decode") == pytest.approx(0.99e15 * 1.12)
    assert h.attention_flops_for("fp8", "fp8", "auto", "prefill") == pytest.approx(0.99e15 * 1.18)
    assert h.attention_flops_for("fp8", "bf16", "auto", "prefill") == pytest.approx(0.99e15)
    w = device("wse3-fp8")
    assert w.low_precision_attention is None
    assert w.attention_flops_for("fp8", "fp8", "auto", "prefill") == pytest.approx(
        w.peak_flops["fp8"] * w.achievable["fp8"])


def test_prefill_attention_takes_the_prefill_speed_up():
    """A B200 prefill of DeepSeek-R1 with an FP8 KV: its attention at the BF16 rate x 1.23 (the
    measured prefill speed-up), not at the decode rate, so a step's compute is the matmuls
    at their rate plus that attention, by hand."""
    sm, s, d, _ = model_for("deepseek-r1", "b200", 8, "fp8", 16384)
    assert sm.prefill_attn_rate == pytest.approx(2.25e15 * 1.23) and sm.attn_flops > sm.prefill_attn_rate
    t = sm.prefill(8192, 8192)
    attn = (sm.F @ s.prefill_attn_flops(8192, 8192)) / (2.25e15 * 1.23) / d.compute_efficiency
    dense = 8192 * (sm.active2 - sm.expert2) + sm.head
    experts = 8192 * sm.imbalance * sm.expert2 / d.expert_compute_efficiency
    mat = (dense + experts) / sm.peak_flops / d.compute_efficiency
    assert t.compute_s[0] == pytest.approx(float(((mat + attn) / sm.k)[0]), rel=1e-9)


def test_coarse_model_experts_touched_grow_with_batch():
    """DeepSeek-V4-Pro (coarse, 384 experts top-6 assumed): at batch 64 the touched experts are
    E (1 - (1 - k/E)^64) = 384 (1 - 0.98438^64) = 384 x 0.6350 = 243.8 by hand, so HBM reads grow with the batch."""
    from planner.physics.model import experts_touched
    s = shape("deepseek-v4-pro")
    assert (s.experts, s.active_experts) == (384, 6)
    assert experts_touched(384, 6, 64) == pytest.approx(384 * (1 - (1 - 6 / 384) ** 64))
    assert experts_touched(384, 6, 64) == pytest.approx(243.8, abs=0.1)
    assert s.total_params == pytest.approx(1.6e12, rel=1e-6) and s.active_params == pytest.approx(49e9, rel=1e-6)
    sm, *_ = model_for("deepseek-v4-pro", "b200", 16, "fp8", 8192)
    m1, m64 = sm.decode(1, 8192).memory_s, sm.decode(64, 8192).memory_s
    assert m64.max() > 3 * m1.max()


def test_groq_layer_over_many_chips_pays_its_fixed_latency_once_and_a_hop_per_chip():
    sm, s, d, p = model_for("llama-3.1-70b", "groq-lpu", None)
    assert len(p.stages) > 400  # hundreds of 230 MB chips
    t = sm.decode(1, 2048)
    assert t.fixed_s.sum() == pytest.approx(80 * d.layer_latency_s(8192), rel=1e-9)
    hop_lat, hop_bw = sm.hops(1)  # the token crosses every chip boundary
    n = len(p.stages) - 1
    assert hop_lat.sum() == pytest.approx(n * d.io_latency_s + hop_bw.sum(), rel=1e-9)
    # by hand: one hidden vector (two where the cut is inside a layer) of 8,192 x 2 bytes per hop
    vectors = sum(2 if st.ends_mid_layer else 1 for st in p.stages[:-1])
    assert hop_bw.sum() == pytest.approx(vectors * 8192 * 2 / d.io_bw_bytes_per_s, rel=1e-9)


def test_wafers_on_a_switch_pay_at_most_one_hop_per_layer():
    """io.hops: layers (wafers): more wafers than layers, and a layer spread over several is
    reached through the switch at once: 61 hops for 63 boundaries."""
    sm, s, d, p = model_for("deepseek-v3", "cs3", 64)
    assert s.layers == 61 and len(p.stages) == 64 and not d.hop_each_device
    hop_lat, hop_bw = sm.hops(1)
    assert hop_lat.sum() == pytest.approx(61 / 63 * (63 * d.io_latency_s + hop_bw.sum()), rel=1e-9)


def test_more_batch_means_slower_users_and_more_throughput():
    sm, *_ = model_for("deepseek-v3", "cs3", 24, "fp8", 8192)
    prev_user, prev_agg = float("inf"), 0.0
    for b in (1, 24, 96, 192):
        _, mixed, serving_s = sm.steady_round(b, 8192, 7168, 1024)
        user, agg = mixed.accepted_tokens / mixed.round_s, b * mixed.accepted_tokens / serving_s
        assert user <= prev_user * (1 + 1e-9) and agg >= prev_agg
        assert agg <= b * user * (1 + 1e-9)  # the replica also prefills each sequence's own replacement
        prev_user, prev_agg = user, agg


def test_throughput_counts_every_replacements_prefill():
    """Each round finishes b x accepted / output sequences, and the replica prefills all their
    replacements: b of them at the others' cost when others decode meanwhile, one sequence
    alone waits for its own (an idle prefill per output/accepted rounds)."""
    sm, *_ = model_for("llama-3.1-70b", "h100", 8, "fp8", 16384)
    r, mixed, serving_s = sm.steady_round(1, 12288, 8192, 1024, chunk=8192)
    assert mixed is r  # one sequence: nobody else's prefill slows its tokens
    ttft = sm.prefill_pass(8192, 0, 8192)[0]
    assert serving_s == pytest.approx(r.round_s + ttft / 1024, rel=1e-12)
    # batch 16 on a GPU: the per-user round carries 15 prompts' passes per 1,024 rounds, the
    # replica's time all 16 (one 8,192-token pass per prompt)
    r, mixed, serving_s = sm.steady_round(16, 12288, 8192, 1024, chunk=8192)
    per_prompt = mixed.round_s - r.round_s  # 15/1024 of one prompt's pass
    assert serving_s - r.round_s == pytest.approx(per_prompt * 16 / 15, rel=1e-9)


def test_speculative_decoding_acceptance_formula():
    assert accepted_per_step(None) == 1.0
    assert accepted_per_step(SpecDecode(draft_tokens=3, acceptance_rate=0.5)) == pytest.approx(1 + .5 + .25 + .125)


def test_speculative_decoding_speeds_up_a_latency_bound_wafer():
    base = dict(model=conftest.catalog.load_model("llama-3.1-70b"), hardware=conftest.catalog.load_hardware("cs3"),
                count=4, context=2048, batch=1)
    plain = estimate(Config(**base)).decode_tok_s_per_user
    sd = SpecDecode(draft_tokens=3, acceptance_rate=0.8, draft_layers=1, draft_params=1e9)
    fast = estimate(Config(**base, spec_decode=sd)).decode_tok_s_per_user
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
    assert gpu.prefill_share > 0.1
    assert wafer.prefill_share == pytest.approx(0.0, abs=1e-9)


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
    t = ds._times(np.zeros(1), 1000.0, np.zeros(1), np.zeros(1))
    a2a = 2 * (1000 * 7168 * 2 / 72) * 8 * 71 / 72
    ar = ds.dev.allreduce_curve.seconds(72, 1000 * 7168 * 2)  # measured for 2 and 4 GPUs, ring-scaled to 72
    assert ar == pytest.approx(ds.dev.allreduce_curve.seconds(4, 1000 * 7168 * 2) * (71 / 72) / (3 / 4))
    assert t.link_s[0] == pytest.approx(3 * ar + 58 * a2a / ds.dev.scale_up_bw_bytes_per_s)


def test_infeasible_rows_name_what_limited_them():
    base = dict(model=conftest.catalog.load_model("deepseek-v3"), context=8192)
    mem = estimate(Config(hardware=conftest.catalog.load_hardware("cs3"), count=8, **base))
    assert not mem.fits and mem.bottleneck == "sram_capacity"
    native = estimate(Config(hardware=conftest.catalog.load_hardware("cs3"), weights="fp8", mode="native", **base))
    assert not native.fits and native.bottleneck == "unsupported" and "no native fp8" in native.reason
    gpu = estimate(Config(hardware=conftest.catalog.load_hardware("h100"), count=8, **base))
    assert not gpu.fits and gpu.bottleneck == "hbm_capacity"


def test_gpu_decode_matmuls_reach_more_of_the_peak_with_more_rows():
    """Decode efficiency = efficiency x m / (m + decode_half_rows): half of the prefill figure
    at m = decode_half_rows rows, approaching it at offline batches. By hand on B200 at 1, the
    half point and 2,048 rows, and in the step: the compute part of a decode step with 2,048
    sequences is its matmul FLOPs over the peak at that efficiency, plus attention's at the
    efficiency of its own rows (query heads per KV head x sequences)."""
    d = device("b200")
    h, e = d.decode_half_rows, d.compute_efficiency
    assert h is not None and 1 <= h <= 8192
    assert d.decode_eff(h) == pytest.approx(e / 2)
    assert d.decode_eff(1) == pytest.approx(e / (1 + h))
    assert d.decode_eff(2048) == pytest.approx(e * 2048 / (2048 + h))
    sm, s, _, _ = model_for("llama-3.1-70b", "b200", 8)
    t = sm.decode(2048, 1024)
    mat = 2048 * (sm.active2 + sm.head) / sm.peak_flops / d.decode_eff(2048)
    # attention's rows: the 8 query heads of each KV head (64 / 8) per sequence
    attn = 2048 * (sm.F @ s.decode_attn_flops(1024)) / sm.attn_flops / d.decode_eff(2048 * 8)
    assert t.compute_s[0] == pytest.approx(float((mat + attn)[0] / 8), rel=1e-9)
    assert device("cs3").decode_eff(2048) == device("cs3").decode_efficiency  # wafers: unchanged


def test_allreduce_curve_reads_between_and_beyond_its_measurements():
    """Log-log between measured sizes, the smallest size's time below them, bytes-proportional
    above them; a larger group: the largest measured one's time x the ring's traffic ratio."""
    from planner.physics.collectives import AllReduceCurve
    c = AllReduceCurve.from_table([1e3, 1e6], {2: [4.0, 40.0], 4: [5.0, 80.0]})
    assert c.seconds(1, 1e6) == 0.0  # one GPU: no all-reduce
    assert c.seconds(2, 1e6) == pytest.approx(40e-6)
    assert c.seconds(2, 10.0) == pytest.approx(4e-6)  # latency floor
    assert c.seconds(2, math.sqrt(1e3 * 1e6)) == pytest.approx(math.sqrt(4.0 * 40.0) * 1e-6)  # geometric midpoint
    assert c.seconds(4, 4e6) == pytest.approx(4 * 80e-6)  # saturated link: time grows with bytes
    assert c.seconds(3, 1e6) == pytest.approx(40e-6 * (2 / 3) / (1 / 2))  # ring traffic 2(n-1)/n
    assert c.seconds(8, 1e6) == pytest.approx(80e-6 * (7 / 8) / (3 / 4))


def test_measured_allreduce_replaces_latency_plus_link_bandwidth():
    """With scale_up.allreduce_measured a TP step's all-reduces cost the measured times, not
    latency.allreduce + ring bytes / NVLink (at 256 tokens, 4 MB: 3x the link-bandwidth figure)."""
    sm, s, d, p = model_for("llama-3.1-70b", "h100", 8)
    t = sm.decode(256, 2048)
    msg = 256 * 8192 * 2
    assert t.link_s[0] == pytest.approx(160 * d.allreduce_curve.seconds(8, msg))
    ring = 2 * 7 / 8 * msg / d.scale_up_bw_bytes_per_s
    assert d.allreduce_curve.seconds(8, msg) > 2.5 * ring


def test_gpu_pipeline_stages_prefill_in_parallel_in_the_steady_state():
    """A steady round's prefill passes cost a GPU pipeline its busiest stage's (or link's) time
    per chunk, the other stages serving other passes; so at the same batch two stages of 72
    GPUs carry more than one (they used to be charged the stages' sum: 25.8k -> 23.9k tok/s)."""
    one, *_ = model_for("deepseek-r1", "gb200-nvl72", 72, "bf16", 8192)
    two, s, d, p = model_for("deepseek-r1", "gb200-nvl72", 144, "bf16", 8192)
    assert two.S == 2
    r, mixed, _ = two.steady_round(2000, 7680, 7168, 1024, chunk=8192)
    pieces = list(two._chunks(7168, 0, 8192))
    per_prompt = sum(max(t.occupancy_s.max(), bw.max(initial=0.0)) for t, (_, bw) in pieces)
    assert per_prompt < 0.75 * sum(t.occupancy_s.sum() for t, _ in pieces)  # not the stages' sum
    tokens = 1999 * r.accepted_tokens * 7168 / 1024
    assert mixed.round_s == pytest.approx(r.round_s + tokens / 7168 * per_prompt)
    assert 2000 / mixed.round_s > 2000 / one.steady_round(2000, 7680, 7168, 1024, chunk=8192)[1].round_s


@pytest.mark.parametrize("name,hw,count,prec,batch", [
    ("llama-3.1-70b", "cs3", 4, "fp4", 80),  # throughput-bound, prefill filling the bubbles
    ("llama-3.1-8b", "cs3", 1, "bf16", 1),  # latency-bound wafer: 32 layers one after another
    ("llama-3.1-8b", "groq-lpu", 79, "fp8", 12),  # a layer over several chips
    ("llama-3.1-70b", "cs3", 4, "fp4", 81),  # 79 micro-batches of 1, one of 2
    ("llama-3.1-70b", "h100", 16, "fp8", 200),  # GPU pipeline, prefill passes amortised
    ("deepseek-r1", "gb200-nvl72", 144, "bf16", 2000),
])
def test_round_time_breakdown_adds_up_to_the_round(name, hw, count, prec, batch):
    """Conservation: the ``time_*_s`` parts of an estimate are the round's time by cause, so
    they sum to the round (a wafer stage's latency is layers_held x one layer time, not one)."""
    e = estimate(Config(model=conftest.catalog.load_model(name), hardware=conftest.catalog.load_hardware(hw),
                        count=count, weights=prec, batch=batch))
    assert not e.reason
    assert sum(v for _, v in e.times) == pytest.approx(e.round_s, rel=1e-9)
    assert e.bottleneck == max(e.times, key=lambda kv: kv[1])[0]


def test_the_clock_range_widens_a_compute_bound_wafer_band():
    """A round that is all compute on a wafer runs clock_high/clock faster at the top of the
    clock range, on top of the calibration spread."""
    e = estimate(Config(model=conftest.catalog.load_model("llama-3.1-70b"), hardware=conftest.catalog.load_hardware("cs3"),
                        count=4, weights="fp4", batch=80))
    d = device("cs3")
    compute = dict(e.times)["compute"]
    assert compute == pytest.approx(e.round_s)
    lo, hi = d.clock_range
    assert e.speed_band_high == pytest.approx(d.speed_band[1] * hi, rel=1e-6)
    assert e.speed_band_low == pytest.approx(d.speed_band[0] * lo, rel=1e-6)


def test_one_more_sequence_than_micro_batches_adds_one_sequence_not_a_batch():
    """81 sequences on an 80-layer pipeline make 79 micro-batches of 1 and one of 2: the stage
    cycle is 79 x occupancy(1) + occupancy(2), not 80 x occupancy(2) (which made throughput
    fall 6.6% from batch 80 to 81)."""
    sm, s, d, p = model_for("llama-3.1-70b", "cs3", 4, prec="fp4", ctx=8192)
    M = sm.microbatches
    assert M == s.layers == 80
    one, two = sm.decode(1, 8192).occupancy_s, sm.decode(2, 8192).occupancy_s
    r80, r81 = sm.decode_round(M, 8192), sm.decode_round(M + 1, 8192)
    assert r80.cycle_s == pytest.approx(M * one.max())
    assert r81.cycle_s == pytest.approx(((M - 1) * one + two).max())
    assert (M + 1) / r81.round_s >= M / r80.round_s  # more sequences, no less throughput
    assert r81.cycle_s < 1.05 * r80.cycle_s
    # latency-bound: each micro-batch circulates at its own trip (the stages are not saturated, so
    # none waits for another); the round is a sequence's token-weighted mean trip
    def trip(b):
        t = sm.decode(b, 8192)
        return float(t.latency_s.sum() + sm.hops(b)[0].sum()) + d.step_overhead_s
    assert r81.token_latency_s > r81.cycle_s
    assert r81.token_latency_s == pytest.approx(81 / (1 * 2 / trip(2) + 79 * 1 / trip(1)), rel=1e-9)


def test_data_parallel_attention_puts_a_sequence_on_one_gpu():
    """DeepSeek on 8 x B200 with data-parallel attention: one sequence's KV sits on one GPU, so
    its read takes 8x what spreading it over the group would; up to 8 sequences the busiest GPU
    still holds one. The growth of the step's memory time with context shows it (the weights'
    and experts' reads cancel between two contexts at the same batch)."""
    sm, s, d, p = model_for("deepseek-r1", "b200", 8, prec="fp8", ctx=32768)
    assert sm.dp_attention and sm.k[0] == 8

    def growth(b):
        return float(sm.decode(b, 32768).memory_s[0] - sm.decode(b, 8192).memory_s[0])

    assert growth(1) == pytest.approx(growth(8), rel=1e-9)
    assert growth(9) == pytest.approx(2 * growth(8), rel=1e-9)  # the busiest GPU holds two
    assert growth(16) == pytest.approx(growth(9), rel=1e-9)
    one_gpu = float(sm._per_stage(sm._kv_fn, 32768)[0] - sm._per_stage(sm._kv_fn, 8192)[0]) * 8 / sm.bw[0]
    assert growth(1) == pytest.approx(one_gpu, rel=1e-9)


def test_a_gpu_pipelines_mixed_round_does_not_fall_when_a_decoder_joins():
    """Llama-3.1-8B on 3 x H100 (TP1 x 3 stages) with a 2K prefill chunk in the round: below 3
    decoders the spare micro-batches carry prefill only, each a third of the chunk, so the round
    is continuous at batch = stages (a chunk riding alone made 2 decoders 11% slower than 3)."""
    sm, s, d, p = model_for("llama-3.1-8b", "h100", 3, ctx=8192)
    assert p.tp == 1 and len(p.stages) == 3
    rounds = [sm.decode_round(b, 7168, 2048, 2048, 8192).round_s for b in range(1, 6)]
    assert all(x <= y * (1 + 1e-9) for x, y in zip(rounds, rounds[1:])), rounds
    pieces = sm.decode_round(1, 7168, 2048, 2048, 8192)
    assert pieces.microbatches == 3  # one decoder + two prefill-only micro-batches
    # more micro-batches configured than stages: still one per stage for the spare prefill (each
    # micro-batch's pass reads the weights again)
    many = StepModel(s, p, d, "bf16", "bf16", microbatches=12)
    assert many.decode_round(1, 7168, 2048, 2048, 8192).round_s == pytest.approx(pieces.round_s, rel=1e-12)


def test_data_parallel_attention_runs_at_the_rows_one_gpu_holds():
    """The busiest GPU's attention GEMM has the rows of its own sequences (x the query heads),
    not the batch's: one sequence per GPU costs the same compute at batch 1 as at batch k (it
    ran 1.8x faster at batch 8 on 72 GB200s, and per-user speed rose with the batch)."""
    sm, s, d, p = model_for("deepseek-r1", "gb200-nvl72", 72, prec="fp8", ctx=131072)
    one, eight = sm.decode(1, 131072), sm.decode(8, 131072)
    assert float(eight.compute_s[0] - one.compute_s[0]) < 0.05 * float(one.compute_s[0])  # only the matmuls grow
    speeds = [b / sm.decode_round(b, 131072).round_s / b for b in (1, 2, 4, 8, 72, 73)]
    assert all(x >= y * (1 - 1e-9) for x, y in zip(speeds, speeds[1:])), speeds
