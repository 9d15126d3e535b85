"""Ask in one command: `plan size` builds an ordinary sweep, `plan sweep` and `plan estimate`
end with the answer (configuration, devices, speed, latency, $/M tokens, kW)."""
import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.config import units
from planner.sweeps import size
from planner.sweeps.answer import ANSWER_COLUMNS, answer, text

from tests.conftest import REPO


def _run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in r.output
    return r


def test_size_scenario_is_hardware_x_precision_x_sensible_counts():
    """Pins the sweep `plan size` writes: per hardware and precision, wafers null/m/2m, GPUs m/2m and
    the whole NVLink domain; capacity search at the SLO for the users."""
    m = size.scenario("deepseek-ai/DeepSeek-R1", 1000, 50, 3.0, ["cs3", "gb200-nvl72"], 32768)
    assert m["model"] == "deepseek-r1" and m["name"].startswith("size-deepseek-r1-1000users-32k-")
    # another SLO, hardware list or precision is another question: its own folder; the same one, the same
    assert size.scenario("deepseek-r1", 1000, 60, 3.0, ["cs3", "gb200-nvl72"], 32768)["name"] != m["name"]
    assert size.scenario("deepseek-r1", 1000, 50, 3.0, ["cs3"], 32768)["name"] != m["name"]
    assert size.scenario("deepseek-ai/DeepSeek-R1", 1000, 50, 3.0, ["cs3", "gb200-nvl72"], 32768)["name"] == m["name"]
    assert m["capacity"] == {"search": True} and m["slo"] == {"decode_tok_s_per_user_p50": 50, "ttft_p99_s": 3.0}
    assert m["workload"] == {"context_tokens": 32768, "output_tokens": 1024, "concurrent_users": 1000}
    groups = {g["name"]: g["axes"] for g in m["sweep"]}
    assert list(groups) == ["cs3-bf16", "cs3-fp8", "cs3-fp4", "gb200-nvl72-fp8", "gb200-nvl72-nvfp4"]
    counts = groups["cs3-fp8"]["deployment.count"]
    assert counts[0] is None and counts[2] == 2 * counts[1]
    assert 72 in groups["gb200-nvl72-fp8"]["deployment.count"]
    assert units.parse_tokens("32k") == 32768 and units.parse_tokens("8192") == 8192


def test_size_needs_an_slo_and_a_device():
    from planner.config.errors import ConfigError
    with pytest.raises(ConfigError, match="give an SLO"):
        size.scenario("deepseek-r1", 10, None, None)
    with pytest.raises(ConfigError, match="option, not a device"):
        size.scenario("deepseek-r1", 10, 50, None, ["bonded-sram"])


def test_plan_size_prints_a_ranked_table_and_writes_it(tmp_path):
    """Pins: the printed answer and answer.csv are the same rows, SLO-meeting ones ranked by
    $/M output tokens; hardware with no answer says why."""
    out = tmp_path / "o"
    r = _run("size", "--model", "llama-3.1-70b", "--users", "200", "--tok-s-per-user", "100", "--ttft-p99", "500ms",
             "--hardware", "cs3,h100", "--context", "4k", "--output", "512", "--analytic-only", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    ans = pd.read_csv(out / "answer.csv")
    assert list(ans.columns) == ANSWER_COLUMNS and (out / "results.csv").exists()
    ranked = ans[ans["rank"].notna()]
    assert len(ranked) and list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["cost_usd_per_mtok_out"].is_monotonic_increasing and ranked["slo_pass"].all()
    assert (ranked["tok_s_per_user"] >= 100).all() and (ranked["ttft_p99_s"] <= 0.5).all()
    lines = r.output.splitlines()
    assert lines[0].startswith("llama-3.1-70b, context 4,096 tokens; SLO") and "rank  hardware" in lines[1]
    assert lines[-1] == str(out / "answer.csv")
    top = ranked.iloc[0]
    assert f"{top['hardware']}" in lines[2] and f"{int(top['devices']):,}" in lines[2]


def test_analytic_only_shrinks_the_batch_to_the_slo(tmp_path):
    """Without the engine the closed form still sizes at the SLO: each replica carries the
    largest batch whose per-user speed meets it (capacity.analytic_batch), not every user its
    memory holds; GPUs holding 200 users at 30 tok/s each once answered "no configuration"."""
    out = tmp_path / "o"
    r = _run("size", "--model", "llama-3.1-70b", "--users", "200", "--tok-s-per-user", "50",
             "--hardware", "h100,b200", "--analytic-only", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    ranked = pd.read_csv(out / "answer.csv").query("rank.notna()")
    assert len(ranked) >= 5 and (ranked["tok_s_per_user"] >= 50).all() and (ranked["replicas"] > 1).all()
    assert set(ranked["hardware"]) == {"h100", "b200"}


def test_answer_per_hardware_and_reasons():
    """Pins: per hardware the cheapest passing row; a hardware with none gets its nearest miss and
    the target it misses in words."""
    df = pd.DataFrame({
        "point": [0, 1, 2, 3], "model": "m", "context_tokens": 8192, "hardware": ["a", "a", "b", "b"],
        "weights_precision": "fp8", "kv_precision": "fp8", "devices": [4, 8, 8, 16], "replicas": 1,
        "decode_tok_s_per_user_analytic": [60.0, 80.0, 20.0, 40.0], "ttft_analytic_s": 0.1,
        "cost_usd_per_mtok_out": [2.0, 1.0, 0.5, 0.7], "power_kw": 10.0, "bottleneck": "compute",
        "hypothetical": False, "slo_pass": [True, True, False, False], "feasible": True,
        "throughput_source": "analytic", "reason": ""})
    ans = answer(df, per_hardware=True, slo={"decode_tok_s_per_user_p50": 50})
    assert list(ans["point"]) == [1, 3] and list(ans["rank"].astype(object)) == [1, pd.NA]
    assert ans.iloc[1]["reason"] == "misses the SLO: 40 tok/s per user < 50"
    shown = text(ans, {"decode_tok_s_per_user_p50": 50})
    assert "no config meets the SLO" in shown and "b: misses the SLO: 40 tok/s per user < 50" in shown


def test_estimate_shows_cost_and_power():
    """Pins: `plan estimate` prices one replica with the default economics (README "Economics")."""
    r = _run("estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--count", "4", "--json")
    d = json.loads(r.output)
    capex, kw = d["capex_usd"], d["power_kw"]
    assert d["usd_per_h"] == pytest.approx(capex / (4 * 8760) + kw * 1.3 * 0.08)
    out_m, in_m = d["aggregate_tok_s"] * 3600 / 1e6, d["input_tok_s"] * 3600 / 1e6
    assert d["cost_usd_per_mtok_out"] == pytest.approx(4 * d["usd_per_h"] / (4 * out_m + in_m))  # price ratio 4 : 1
    assert out_m * d["cost_usd_per_mtok_out"] + in_m * d["cost_usd_per_mtok_in"] == pytest.approx(d["usd_per_h"])
    assert d["facility_power_kw"] == pytest.approx(kw * 1.3)
    text_out = _run("estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--count", "4").output
    assert "per M output tokens" in text_out and "kW at the wall" in text_out and "$" in text_out


def test_sweep_ends_with_the_answer_and_the_report(tmp_path):
    """Pins: `plan sweep` prints the cheapest configuration per hardware and writes the plots."""
    out = tmp_path / "o"
    r = _run("sweep", REPO / "scenarios" / "llama-70b.yaml", "--analytic-only", "-j", "1", "-o", out)
    assert r.exit_code == 0, r.output
    assert "cheapest configuration per hardware meeting the SLO:" in r.output
    assert "llama-3.1-70b, context 1,280 tokens" in r.output
    for hw in ("cs3", "h100", "h200", "b200"):
        assert any(line.split()[1:2] == [hw] for line in r.output.splitlines() if line.startswith("  ")), hw
    assert (out / "summary.md").exists() and (out / "cost_vs_speed.png").exists()
    assert r.output.rstrip().splitlines()[-1] == str(out / "results.csv")
    assert not math.isnan(pd.read_csv(out / "results.csv")["cost_usd_per_mtok_out"].min())


@pytest.mark.slow
def test_plan_size_simulated_small(tmp_path):
    """Pins: the default (simulated, capacity search) path end to end on a small model."""
    out = tmp_path / "o"
    r = _run("size", "--model", "llama-3.1-8b", "--users", "40", "--tok-s-per-user", "200", "--hardware", "cs3,h100",
             "--context", "2k", "--output", "256", "-j", "1", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    ans = pd.read_csv(out / "answer.csv")
    assert ans["slo_pass"].any() and (ans[ans["slo_pass"]]["throughput_source"] == "sim").all()


def test_answer_labels_speculative_rows_and_ranks_one_row_per_distinct_answer():
    """A ranked row that assumes speculative decoding says so in its precision label (its speed
    and $/M rest on it); two sweep values resolving to the same deployment rank once."""
    import pandas as pd
    from planner.sweeps.answer import answer, text
    base = dict(model="m", context_tokens=8192, hardware="b200", weights_precision="nvfp4", kv_precision="fp8",
                decode_tok_s_per_user_p50=60.0, ttft_p99_s=0.5, slo_pass=True, feasible=True, reason="",
                replicas=1, power_kw=10.0, bottleneck="memory", hypothetical=False, throughput_source="simulated")
    df = pd.DataFrame([
        {**base, "point": 0, "devices": 8, "cost_usd_per_mtok_out": 0.2,
         "deployment.spec_decode.draft_tokens": 3, "deployment.spec_decode.acceptance_rate": 0.77},
        {**base, "point": 1, "devices": 8, "cost_usd_per_mtok_out": 0.8,
         "deployment.spec_decode.draft_tokens": None, "deployment.spec_decode.acceptance_rate": None},
        {**base, "point": 2, "devices": 8, "cost_usd_per_mtok_out": 0.8,  # the same answer as point 1
         "deployment.spec_decode.draft_tokens": None, "deployment.spec_decode.acceptance_rate": None},
    ])
    ans = answer(df)
    assert list(ans["precision"]) == ["nvfp4/fp8 spec 3@0.77", "nvfp4/fp8"]
    assert list(ans["point"]) == [0, 1] and list(ans["rank"]) == [1, 2]
    assert "price ratio" in text(ans)
