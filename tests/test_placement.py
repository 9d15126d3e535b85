"""Memory placement against hand calculations and capacity invariants."""
import math

import numpy as np
import pytest

from planner.physics.hardware import Infeasible
from planner.physics.placement import place, resident_bytes

from tests.conftest import device, shape

CS3_USABLE = 44e9 * 0.9


def test_deepseek_bf16_does_not_fit_on_16_wafers_with_reason():
    with pytest.raises(Infeasible) as e:
        place(shape("deepseek-v3"), device("cs3"), 16, "bf16", "bf16", 8192)
    assert str(e.value).startswith("weights do not fit: 1.34 TB > 16 x 39.6 GB usable on cs3 (needs 34)")


def test_fewest_wafers_is_closed_form():
    s, d = shape("llama-3.1-70b"), device("cs3")
    w, kv = resident_bytes(s, "bf16", "bf16", "bf16", 8192, 0.0)
    p = place(s, d, None, "bf16", "bf16", 8192)
    assert p.devices == math.ceil((w.sum() + kv.sum()) / CS3_USABLE) == 4
    assert p.max_concurrent == int((4 * CS3_USABLE - w.sum()) // kv.sum())


def test_min_sequences_sizes_the_pipeline():
    s, d = shape("deepseek-v3"), device("cs3")
    p = place(s, d, None, "fp8", "fp8", 32768, min_sequences=500)
    assert p.max_concurrent >= 500
    q = place(s, d, p.devices - 1, "fp8", "fp8", 32768)
    assert q.max_concurrent < 500


@pytest.mark.parametrize("model,count,prec,ctx", [
    ("deepseek-v3", 40, "bf16", 8192), ("llama-3.1-405b", 24, "bf16", 4096), ("kimi-k2", 30, "fp8", 32768),
    ("gpt-oss-120b", 3, "mxfp4", 131072), ("llama-3.1-8b", 1, "bf16", 2048),
])
def test_every_stage_fits_its_device(model, count, prec, ctx):
    s, d = shape(model), device("cs3")
    kvp = "fp8" if prec not in ("bf16", "fp16") else prec
    p = place(s, d, count, prec, kvp, ctx)
    assert len(p.stages) == count
    total = 0.0
    for st in p.stages:
        load = st.weight_bytes + p.max_concurrent * st.kv_bytes_per_seq
        assert load <= d.capacity_bytes * (1 + 1e-9)
        total += st.weight_bytes
    assert total == pytest.approx(p.weight_bytes)
    assert p.stages[0].start == 0 and p.stages[-1].end == s.layers


def test_bonded_sram_adds_capacity():
    s = shape("deepseek-v3")
    plain = place(s, device("cs3"), 20, "fp8", "fp8", 32768)
    bonded = place(s, device("cs3", layers=2), 20, "fp8", "fp8", 32768)
    # 2 x 110 GB more per wafer, all of it KV
    extra = 20 * 2 * 110e9 // plain.kv_bytes_per_seq
    assert bonded.max_concurrent == pytest.approx(plain.max_concurrent + extra, abs=1)


def test_gpu_tensor_then_pipeline_parallel():
    s, d = shape("llama-3.1-70b"), device("h100")
    p = place(s, d, 16, "bf16", "bf16", 8192)
    assert p.tp == 8 and len(p.stages) == 2 and all(st.devices == 8 for st in p.stages)
    assert p.kv_replication == 1.0  # 8 KV heads over TP 8
    p = place(s, d, 12, "bf16", "bf16", 8192)  # TP8 does not divide 12: TP4 x 3 stages
    assert p.tp == 4 and len(p.stages) == 3
    p = place(shape("deepseek-v3"), d, 12, "fp8", "fp8", 8192)  # MLA, data-parallel attention: no heads to divide
    assert p.tp == 6 and len(p.stages) == 2


def test_gqa_kv_replicated_beyond_kv_heads():
    p = place(shape("qwen3-235b-a22b"), device("b200"), 8, "fp8", "fp8", 8192)
    assert p.kv_replication == 2.0  # 4 KV heads over TP 8


def test_gpu_concurrency_hand_calc():
    s, d = shape("llama-3.1-70b"), device("h100")
    w, kv = resident_bytes(s, "bf16", "bf16", "bf16", 8192, 0.0)
    p = place(s, d, 8, "bf16", "bf16", 8192)
    assert p.max_concurrent == int((8 * 80e9 * 0.9 - w.sum()) // kv.sum())


def _both_attentions(model: str, hardware: str, attention: int, dp: dict, tp: dict):
    """The model on 8 GPUs at FP8 and 8K, with data- and tensor-parallel attention, once its
    attention weights match the hand count: (shape, device, attention, weights, KV, dp, tp)."""
    s, d = shape(model), device(hardware)
    assert float(s.attn_params.sum()) == attention
    w, kv = resident_bytes(s, "fp8", "bf16", "fp8", 8192, 0.0)
    return s, d, attention, w, kv, place(s, d, 8, "fp8", "fp8", 8192, **dp), place(s, d, 8, "fp8", "fp8", 8192, **tp)


def test_data_parallel_attention_puts_the_attention_weights_on_every_gpu():
    """DeepSeek-V3 on 8 x H200, FP8. An MLA layer's attention weights (q down 7168 x 1536, q up
    1536 x 128 x 192, KV down 7168 x 576, KV up 512 x 128 x 256, output 128 x 128 x 7168:
    187,105,280 per layer, 61 layers, 1 byte) sit once per GPU when each GPU runs every head for
    its own sequences (TensorRT-LLM's attention DP: 'weight_divisor = 1', modeling_deepseekv3.py),
    once per replica when attention is tensor parallel. A decode step at batch 1 then reads a whole
    copy on the GPU that serves the sequence: 7 x 11.4 GB more bytes over the group's bandwidth."""
    from planner.physics.step import StepModel
    s, d, attention, w, kv, dp, tp = _both_attentions("deepseek-v3", "h200", 61 * 187_105_280, {},
                                                      {"mla_attention": "tp"})
    assert dp.weight_bytes == pytest.approx(w.sum() + 7 * attention)
    assert tp.weight_bytes == pytest.approx(w.sum())
    assert dp.max_concurrent == int((8 * d.capacity_bytes - w.sum() - 7 * attention) // kv.sum())
    extra = StepModel(s, dp, d, "fp8", "fp8").decode(1, 8192).memory_s - \
        StepModel(s, tp, d, "fp8", "fp8").decode(1, 8192).memory_s
    # the KV reads are alike: tensor-parallel attention reads the one latent KV on all 8 GPUs, and
    # the data-parallel GPU serving the sequence is the step's busiest (8 x its share of the group)
    assert float(extra[0]) == pytest.approx(7 * attention / (8 * d.mem_bw_bytes_per_s * d.mem_efficiency))


def test_gqa_data_parallel_attention_shards_the_kv_by_sequence():
    """Qwen3-235B-A22B (4 KV heads) on 8 x B200, FP8, as TensorRT-LLM's attention-DP recipe runs it:
    each GPU holds all 4 KV heads of its own sequences (no replication, where tensor-parallel
    attention holds each KV head on 2 GPUs) and a copy of the attention weights (64 x 128 query
    and output, 2 x 4 x 128 KV projections of 4096: 71,303,168 per layer, 94 layers); its MoE
    layers pay an all-to-all dispatch and combine instead of two all-reduces."""
    from planner.physics.step import StepModel
    s, d, attention, w, kv, dp, tp = _both_attentions("qwen3-235b-a22b", "b200", 94 * 71_303_168,
                                                      {"gqa_attention": "dp"}, {})
    assert (tp.dp_attention, tp.kv_replication) == (False, 2.0) and tp.weight_bytes == pytest.approx(w.sum())
    assert (dp.dp_attention, dp.kv_replication) == (True, 1.0)
    assert dp.weight_bytes == pytest.approx(w.sum() + 7 * attention)
    assert dp.max_concurrent == int((8 * d.capacity_bytes - w.sum() - 7 * attention) // kv.sum())
    steps = StepModel(s, dp, d, "fp8", "fp8")
    assert float(steps.alltoalls[0]) == 94 and float(steps.allreduces[0]) == 0
    assert float(StepModel(s, tp, d, "fp8", "fp8").allreduces[0]) == 2 * 94
    # a 64-head model on 6 GPUs: tensor-parallel attention cannot split the heads 6 ways, DP can
    assert place(s, d, 6, "fp8", "fp8", 8192).tp != 6 and place(s, d, 6, "fp8", "fp8", 8192, gqa_attention="dp").tp == 6


def test_groq_splits_layers_over_many_chips():
    p = place(shape("llama-3.1-70b"), device("groq-lpu"), None, "fp8", "fp8", 2048)
    assert p.devices > 300 and np.mean([st.end - st.start for st in p.stages]) < 1


def test_tensor_parallel_degree_divides_the_attention_heads():
    """Engines shard whole query heads: on 3 GPUs Llama-3.1-8B's 32 heads run TP1 x 3 pipeline
    stages, not TP3; a GB200 NVL72 domain is no TP72 group for a 64-head model (TP8 x 9 stages).
    MLA with data-parallel attention shards sequences, so DeepSeek on 72 GPUs stays TP72."""
    p = place(shape("llama-3.1-8b"), device("h100"), 3, "bf16", "bf16", 8192)
    assert (p.tp, len(p.stages)) == (1, 3)
    p = place(shape("llama-3.1-70b"), device("gb200-nvl72"), 72, "bf16", "bf16", 8192)
    assert (p.tp, len(p.stages)) == (8, 9)
    assert place(shape("llama-3.1-70b"), device("gb200-nvl72"), 64, "bf16", "bf16", 8192).tp == 64
    assert place(shape("llama-3.1-8b"), device("h100"), 8, "bf16", "bf16", 8192).tp == 8
    assert place(shape("deepseek-r1"), device("gb200-nvl72"), 72, "fp8", "fp8", 8192).tp == 72
    assert place(shape("deepseek-r1"), device("gb200-nvl72"), 72, "fp8", "fp8", 8192, mla_attention="tp").tp == 8
    # the KV heads shard whole or replicate whole: GLM-4.7's 8 KV heads on 6 GPUs are TP2 x 3, not TP6
    assert place(shape("glm-4.7"), device("b200"), 6, "fp8", "fp8", 8192).tp == 2
    # sized automatically: the fewest GPUs that hold the sequences, in a valid layout
    p = place(shape("llama-3.1-405b"), device("gb200-nvl72"), None, "bf16", "bf16", 8192, min_sequences=600)
    assert 128 % p.tp == 0 and p.devices % p.tp == 0 and p.devices == 72
