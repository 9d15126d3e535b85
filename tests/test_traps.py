"""No silent traps: a unit left out, bits for bytes, a near-miss name, a Hugging Face id, a
mistyped option value. Each is an error that says what was probably meant, or is read as
documented (README "Scenario files", "Models")."""
import pytest
from click.testing import CliRunner

from planner import catalog
from planner.cli import main
from planner.config.errors import ConfigError, closest
from planner.config.schema import HardwareSpec
from planner.plan.scenario import load

from tests.conftest import REPO
from tests.test_config_errors import GOOD, problems

WAFER = """
name: w
kind: wafer
description: test wafer
memory: {capacity: CAPACITY, bandwidth: 21 PB/s, source: test source}
compute: {fp16: 125 PFLOP/s, source: test source}
io: {bandwidth: 1.2 Tb/s, latency: 5 us, source: test source}
latency: {layer_base: 3 us, source: test source}
power: {watts: 23 kW, source: test source}
cost: {capex_usd: 1e6, source: test source}
"""


def test_a_bare_memory_size_is_an_error_that_suggests_gb():
    """Pins: `capacity: 264` is not silently 264 bytes."""
    out = problems(WAFER.replace("CAPACITY", "264"), HardwareSpec)
    assert any(p.startswith("s.yaml:5:") and "memory.capacity: a memory size needs a unit" in p
               and "did you mean 264 GB?" in p and "(got 264)" in p for p in out), out


def test_bits_for_a_memory_size_are_an_error_unless_spelled_out():
    """Pins: `264 Gb` (bits) is an error naming both readings; `264 Gbit` is 33 GB on purpose."""
    out = problems(WAFER.replace("CAPACITY", "264 Gb"), HardwareSpec)
    assert any("memory sizes are in bytes" in p and "did you mean 264 GB?" in p and "264 Gbit" in p for p in out)
    from planner.config.load import validate
    from planner.config.yamlio import load_text
    h = validate(HardwareSpec, load_text(WAFER.replace("CAPACITY", "264 Gbit"), "w.yaml"))
    assert h.memory.capacity == 33e9 and h.io.bandwidth == 150e9  # links stay in bits per second


def test_a_bare_si_number_is_still_bytes():
    """Pins: what `plan show` prints (44000000000.0) reads back unchanged."""
    from planner.config.load import validate
    from planner.config.yamlio import load_text
    assert validate(HardwareSpec, load_text(WAFER.replace("CAPACITY", "44000000000.0"), "w.yaml")).memory.capacity \
        == 44e9


def test_slo_takes_units(write):
    """Pins: `ttft_p99_s: 3 s`, `500 ms` and `50 tok/s` work where the README says units work."""
    p = write("s.yaml", GOOD + "slo: {ttft_p99_s: 3 s, tpot_p99_s: 500 ms, decode_tok_s_per_user_p50: 50 tok/s}\n")
    slo = load(p).scenario.slo
    assert (slo.ttft_p99_s, slo.tpot_p99_s, slo.decode_tok_s_per_user_p50) == (3.0, 0.5, 50.0)
    out = problems(GOOD + "slo: {ttft_p99_s: 3 parsecs}\n")
    assert any("slo.ttft_p99_s: unknown time unit 'parsecs'" in p for p in out)


def test_hugging_face_ids_and_any_case_find_catalog_specs(write):
    """Pins: a Hugging Face id names the catalog model with its shapes; names ignore case."""
    assert catalog.load_model("deepseek-ai/DeepSeek-V3").name == "deepseek-v3"
    assert catalog.load_model("Meta-Llama-3.1-70B-Instruct").name == "llama-3.1-70b"
    assert catalog.load_hardware("B200").name == "b200"
    p = write("s.yaml", GOOD.replace("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct"))
    assert load(p).points[0].config.model.name == "llama-3.1-8b"
    # an alias names one spec: DeepSeek-R1 extends V3 but does not answer to V3's ids
    assert "deepseek-ai/DeepSeek-V3" not in catalog.load_model("deepseek-r1").aliases
    assert catalog.load_model("deepseek-ai/DeepSeek-R1").name == "deepseek-r1"


def test_near_miss_names_suggest_the_name_they_begin():
    """Pins: `gb200` suggests gb200-nvl72 (plain similarity would offer b200)."""
    with pytest.raises(ConfigError, match=r"no hardware named 'gb200'; did you mean 'gb200-nvl72'\?"):
        catalog.load_hardware("gb200")
    with pytest.raises(ConfigError, match=r"did you mean 'deepseek-v3'\?"):
        catalog.load_model("deepseek-ai/DeepSeek-V4-Base")
    assert closest("hardwre", ["hardware", "model"]) == "hardware"
    assert closest("xyz", ["hardware", "model"]) is None


@pytest.mark.parametrize("args,expect", [
    (["estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--software", "launch"],
     "did you mean 'launch-2024-08'?"),
    (["estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--precision", "fp9"], "did you mean 'fp8'?"),
    (["list", "hardwre"], "did you mean 'hardware'?"),
    (["estimate", "--model", "llama-3.1-70b", "--hardware", "gb200"], "did you mean 'gb200-nvl72'?"),
    (["size", "--model", "deepseek-r1", "--users", "10", "--ttft-p99", "3 parsecs"], "unknown time unit"),
    (["size", "--model", "deepseek-r1", "--users", "10", "--ttft-p99", "3s", "--precision", "fp9"],
     "did you mean 'fp8'?"),
])
def test_mistyped_option_values_exit_2_with_a_suggestion(args, expect):
    """Pins: a mistyped option value is a usage error (exit 2) naming the likely value."""
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and expect in r.output and "Traceback" not in r.output, r.output


def test_shipped_specs_and_scenarios_still_validate():
    """Pins: the stricter units reject nothing the project ships."""
    files = [str(p) for p in sorted((REPO / "hardware_specs").glob("*.yaml")) + sorted((REPO / "scenarios").glob("*.yaml"))]
    r = CliRunner().invoke(main, ["validate", *files])
    assert r.exit_code == 0, r.output
