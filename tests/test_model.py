"""Model math against hand-computed figures and the official parameter counts."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner import catalog
from planner.physics.model import PRECISION_BYTES, sum_min

from tests.conftest import shape

# official totals (billions) from the model cards / DOMAIN.md; biases and norms are ignored
OFFICIAL = {
    "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.6, "llama-3.1-405b": 405.9, "llama-4-maverick": 400,
    "deepseek-v3": 671, "kimi-k2": 1040, "qwen3-235b-a22b": 235, "gpt-oss-120b": 116.8, "glm-4.7": 355,
    "deepseek-v4-pro": 1600, "deepseek-v4-flash": 284,
}
ACTIVE = {"deepseek-v3": 37, "kimi-k2": 32, "qwen3-235b-a22b": 22, "llama-4-maverick": 17, "gpt-oss-120b": 5.1,
          "glm-4.7": 32, "deepseek-v4-pro": 49, "deepseek-v4-flash": 13}


@pytest.mark.parametrize("name,billions", OFFICIAL.items())
def test_total_params_match_official(name, billions):
    assert shape(name).total_params / 1e9 == pytest.approx(billions, rel=0.015)


@pytest.mark.parametrize("name,billions", ACTIVE.items())
def test_active_params_match_official(name, billions):
    # Vendors differ on whether embedding/unembedding count as "active" (Meta: yes; OpenAI: no);
    # ours counts the lm head (it costs FLOPs) and not the embedding lookup (it does not).
    assert shape(name).active_params / 1e9 == pytest.approx(billions, rel=0.08)


def test_deepseek_v3_mla_kv_is_70272_bytes_per_token():
    # 61 layers x (kv_lora 512 + rope 64) x 2 B
    assert shape("deepseek-v3").kv_bytes_per_token("bf16").sum() == 61 * 576 * 2 == 70_272


def test_llama_70b_gqa_kv_is_327680_bytes_per_token():
    # 2 (K,V) x 80 layers x 8 KV heads x 128 x 2 B
    assert shape("llama-3.1-70b").kv_bytes_per_token("bf16").sum() == 2 * 80 * 8 * 128 * 2 == 327_680


def test_kv_precision_scales_kv():
    s = shape("llama-3.1-70b")
    assert s.kv_bytes_per_token("fp8").sum() == 327_680 / 2


def test_deepseek_v32_indexer_adds_fp8_keys():
    base = shape("deepseek-v3").kv_bytes_per_token("bf16").sum()
    assert shape("deepseek-v3.2").kv_bytes_per_token("bf16").sum() - base == 61 * 128


def test_gpt_oss_mxfp4_weights_61_to_65_gb():
    w, emb, head = shape("gpt-oss-120b").weight_bytes("mxfp4")
    assert 61e9 <= w.sum() + emb + head <= 65e9


def test_block_scaled_4bit_overheads():
    assert PRECISION_BYTES["mxfp4"] * 8 == 4.25 and PRECISION_BYTES["nvfp4"] * 8 == 4.5


def test_sliding_window_caps_kv():
    s = shape("gpt-oss-120b")  # 18 full layers, 18 sliding-128 layers, 2 x 8 x 64 x 2 B = 2048 B/token/layer
    per_seq = s.kv_bytes_per_sequence("bf16", 8192).sum()
    assert per_seq == 18 * 2048 * 8192 + 18 * 2048 * 128


def test_maverick_kv_at_most_192_kib_per_token():
    s = shape("llama-4-maverick")
    assert s.kv_bytes_per_token("bf16").sum() == 192 * 1024
    assert s.kv_bytes_per_sequence("bf16", 65536).sum() / 65536 < 192 * 1024 / 2  # chunked layers capped


def test_moe_every_other_layer_for_maverick():
    s = shape("llama-4-maverick")
    assert (s.expert_params > 0).sum() == 24 and s.expert_params[1] > 0 and s.expert_params[0] == 0


def test_decode_flops_about_twice_active_params_at_short_context():
    s = shape("llama-3.1-70b")
    assert s.decode_flops(1).sum() + s.head_flops == pytest.approx(2 * s.active_params, rel=1e-3)


@given(st.integers(0, 5000), st.integers(0, 5000), st.one_of(st.just(0), st.integers(1, 6000)))
def test_sum_min_matches_brute_force(a, n, w):
    b = a + n
    brute = sum(min(i, w) if w else i for i in range(a + 1, b + 1))
    assert sum_min(a, b, w) == pytest.approx(brute)


def test_every_catalog_model_has_a_source():
    for m in catalog.all_models():
        assert len(m.source) > 10, m.name
