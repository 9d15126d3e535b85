"""Every user mistake is a located one-line problem, never a traceback."""
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.config.errors import ConfigError
from planner.config.load import validate
from planner.config.schema import HardwareSpec, Scenario
from planner.config.yamlio import load_text
from planner.plan.scenario import load

LINE = re.compile(r"^\S+:\d+:\d+: \S*:? ?.+")

GOOD = """
name: t
model: llama-3.1-8b
deployment: {hardware: cs3, count: 1}
workload: {context_tokens: 4096, output_tokens: 512}
"""


def problems(text: str, cls=Scenario) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate(cls, load_text(text, "s.yaml"))
    return [str(p) for p in e.value.problems]


def load_problems(path) -> list[str]:
    """The located lines loading the scenario at ``path`` reports (it must fail)."""
    with pytest.raises(ConfigError) as e:
        load(path)
    return [str(p) for p in e.value.problems]


def test_good_scenario_validates():
    sc = validate(Scenario, load_text(GOOD, "s.yaml"))
    assert sc.workload.prompt == 4096 - 512


def test_unknown_key_with_suggestion_and_position():
    out = problems(GOOD.replace("deployment:", "deploymnet:"))
    assert out == ["s.yaml:4:1: deploymnet: unknown key; did you mean 'deployment'?"]


def test_nested_unknown_key_suggests_field_of_that_section():
    out = problems(GOOD.replace("count: 1", "cuont: 1"))
    assert any("deployment.cuont: unknown key; did you mean 'count'?" in p for p in out)


def test_value_error_reports_value_and_position():
    out = problems(GOOD.replace("context_tokens: 4096", "context_tokens: -3"))
    assert any(p.startswith("s.yaml:5:28: workload.context_tokens:") and "(got -3)" in p for p in out)


def test_duplicate_keys_are_errors():
    with pytest.raises(ConfigError) as e:
        load_text("a: 1\nb: 2\na: 3\n", "d.yaml")
    assert str(e.value) == "d.yaml:3:1: a: duplicate key (first defined on line 1)"


def test_exponent_floats_and_units_parse():
    loc = load_text("x: 1e12\ny: 44e9\nz: -2.5E-3\n", "f.yaml")
    assert loc.data == {"x": 1e12, "y": 44e9, "z": -2.5e-3}


def test_hardware_units_and_bits_vs_bytes():
    text = """
    name: w
    kind: wafer
    description: test wafer
    memory: {capacity: 44 GB, bandwidth: 21 PB/s, source: test source}
    compute: {fp16: 125 PFLOP/s, source: test source}
    io: {bandwidth: 1.2 Tb/s, latency: 5 us, source: test source}
    latency: {layer_base: 3 us, source: test source}
    power: {watts: 23 kW, source: test source}
    cost: {capex_usd: 1e6, source: test source}
    """
    import textwrap
    h = validate(HardwareSpec, load_text(textwrap.dedent(text), "w.yaml"))
    assert h.memory.capacity == 44e9 and h.io.bandwidth == 150e9 and h.io.latency == pytest.approx(5e-6)
    assert h.power.watts == 23e3 and h.cost.capex_usd == 1e6


def test_missing_source_is_an_error():
    out = problems("name: w\nkind: gpu\ndescription: d\nmemory: {capacity: 1 GB, bandwidth: 1 TB/s}\n",
                   HardwareSpec)
    assert any("memory.source: required key 'source' is missing" in p for p in out)


def test_sweep_axis_error_points_at_axis_value(write):
    p = write("s.yaml", GOOD + """
sweep:
  - name: g
    axes:
      deployment.count: [1, -4]
""")
    msgs = load_problems(p)
    assert any(m.startswith(f"{p}:9:29: deployment.count:") and "(got -4)" in m for m in msgs), msgs


def test_a_bad_value_inside_a_mapping_axis_value_points_at_that_value(write):
    """A mapping swept as one value ({weights: fp6}): the error names the line of the key inside
    it, not the base file's line for the same path (which holds a valid value)."""
    p = write("s.yaml", """
name: t
model: llama-3.1-8b
deployment: {hardware: h100, count: 1, precision: {weights: bf16}}
workload: {context_tokens: 4096, output_tokens: 512}
sweep:
  - name: g
    axes:
      deployment.precision:
        - {weights: fp8}
        - {weights: fp6}
""")
    msgs = load_problems(p)
    assert any(m.startswith(f"{p}:10:21: deployment.precision.weights:") and "'fp6'" in m for m in msgs), msgs


def test_unknown_catalog_name_suggests(write):
    p = write("s.yaml", GOOD.replace("llama-3.1-8b", "llama-3.1-8bb"))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "no model named 'llama-3.1-8bb'; did you mean 'llama-3.1-8b'?" in str(e.value)
    assert str(e.value).startswith(f"{p}:2:8: model:")


def test_one_run_lists_every_problem_of_base_axes_and_names(write):
    """Schema problems of the base, of an axis key, and unknown catalog names (in the base and
    in an axis value) all in one run, not one stage after another is fixed."""
    p = write("s.yaml", """
name: t
model: llama-3.3-70bx
deployment: {hardware: h100, count: 8, precison: {weights: fp8}}
workload: {context_tokens: 4096, output_tokens: 512}
sweep:
  - name: g
    axes:
      deployment.cont: [1, 2]
      deployment.hardware: [h100, cs-3x]
""")
    msgs = load_problems(p)
    want = [(2, "model: no model named 'llama-3.3-70bx'"), (3, "deployment.precison: unknown key"),
            (8, "deployment.cont: unknown key"), (9, "deployment.hardware: no hardware named 'cs-3x'")]
    for line, text in want:
        assert any(m.startswith(f"{p}:{line}:") and text in m for m in msgs), (line, text, msgs)
    assert len(msgs) == len(want), msgs  # each once, however many points repeat it


def test_a_point_lists_its_model_and_hardware_problems_together(write):
    p = write("s.yaml", GOOD.replace("llama-3.1-8b", "llama-3.1-8bb").replace("cs3", "cs-3"))
    msgs = load_problems(p)
    assert len(msgs) == 2 and "no model named" in msgs[0] and "no hardware named 'cs-3'" in msgs[1], msgs


def test_yaml_syntax_error_is_located():
    with pytest.raises(ConfigError) as e:
        load_text("a: [1, 2\nb: 3\n", "y.yaml")
    assert str(e.value).startswith("y.yaml:")


keys = st.sampled_from(["name", "model", "deployment", "workload", "slo", "economics", "sweep", "seed",
                        "count", "hardware", "precision", "context_tokens", "bogus", "weights"])
scalars = st.one_of(st.integers(-10, 10 ** 6), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
                    st.none())
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(keys, c, max_size=4)),
                      max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(keys, values, max_size=6))
def test_random_configs_never_traceback(data, tmp_path_factory):
    import yaml
    p = tmp_path_factory.mktemp("h") / "r.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        load(p)
    except ConfigError as e:
        assert e.problems and all(str(x).startswith(str(p)) for x in e.problems)


def test_a_malformed_allreduce_table_is_located():
    """Measured all-reduce times: sizes must increase, each group's list match them."""
    import textwrap
    base = textwrap.dedent("""
    name: g
    kind: gpu
    description: test gpu
    memory: {capacity: 80 GB, bandwidth: 3 TB/s, source: test source}
    compute: {fp16: 1 PFLOP/s, source: test source}
    io: {bandwidth: 400 Gb/s, latency: 5 us, source: test source}
    latency: {layer_dense: 30 us, source: test source}
    scale_up:
      domain_size: 8
      bandwidth: 450 GB/s
      source: test source
      allreduce_measured:
        message_bytes: [SIZES]
        latency_us: {2: [TIMES]}
        source: test source
    power: {watts: 10 kW, source: test source}
    cost: {capex_usd: 1e5, source: test source}
    """)
    ok = validate(HardwareSpec, load_text(base.replace("SIZES", "1e3, 1e6").replace("TIMES", "4, 40"), "g.yaml"))
    assert ok.scale_up.allreduce_measured.latency_us[2] == [4.0, 40.0]
    for sizes, times, what in (("1e6, 1e3", "4, 40", "increase"), ("1e3, 1e6", "4", "1 values for 2")):
        out = problems(base.replace("SIZES", sizes).replace("TIMES", times), HardwareSpec)
        assert len(out) == 1 and LINE.match(out[0]) and "allreduce_measured" in out[0] and what in out[0], out


def _at(msgs: list[str], path, line: int, text: str) -> bool:
    return any(m.startswith(f"{path}:{line}:") and text in m for m in msgs)


def test_schema_problems_do_not_hide_names_files_window_or_yaml_problems(write):
    """A duplicate key, a value out of range, an unknown software profile and bonded spec, a
    missing file and a context beyond the window: one run, each once."""
    p = write("s.yaml", """
name: t
model: llama-3.1-70b
deployment:
  hardware: cs3
  count: 4
  count: 5
  software: launch
hardware: {bonded_sram: {layers: 1, spec: bonded-sramm}}
workload:
  context_tokens: 2000000
  output_tokens: 512
  prompt_dist: {dist: empirical, file: nofile.csv, column: prompt}
economics: {pue: 9}
""")
    msgs = load_problems(p)
    for line, text in ((6, "duplicate key"), (7, "cs3 has no software profile"), (8, "no hardware named 'bonded-sramm'"),
                       (10, "beyond llama-3.1-70b's context window"), (12, "file not found"), (13, "economics.pue")):
        assert _at(msgs, p, line, text), (line, text, msgs)
    assert len(msgs) == 6, msgs


def test_a_broken_group_or_skip_entry_does_not_hide_the_other_points(write):
    """A zip group of unequal axes (said with the lengths, at its axes) stands in empty; a bad
    skip entry is reported while its group's points are still checked."""
    p = write("s.yaml", GOOD + """
sweep:
  - name: z
    mode: zip
    axes:
      deployment.count: [1, 2]
      deployment.hardware: [cs3]
  - name: p
    axes:
      deployment.hardware: [cs3, b2000]
    skip:
      - {deployment.hardwar: cs3}
""")
    msgs = load_problems(p)
    assert _at(msgs, p, 10, "zip axes must all have the same number of values (got deployment.count 2, "
                           "deployment.hardware 1)"), msgs
    assert _at(msgs, p, 14, "no hardware named 'b2000'"), msgs
    assert _at(msgs, p, 16, "not an axis of group 'p'"), msgs
    assert len(msgs) == 3, msgs


def test_a_misspelt_required_key_is_one_problem_and_huge_integers_say_so(write):
    p = write("s.yaml", GOOD.replace("count: 1}", "count: 1, disaggregated: {prefill: {hardwre: b200}}}")
              .replace("output_tokens: 512}", "output_tokens: 512, requests: 1e99}"))
    msgs = load_problems(p)
    assert [m for m in msgs if "prefill" in m] == [f"{p}:3:65: deployment.disaggregated.prefill.hardwre: unknown key; "
                                                   "did you mean 'hardware'?"], msgs
    assert any("workload.requests: too large a number for this key" in m for m in msgs), msgs


def test_a_single_scenario_refuses_options_its_hardware_or_model_cannot_take(write):
    """Bonded SRAM on a GPU, speculative decoding with no draft: input mistakes (exit 2) for one
    scenario; a sweep keeps such points as infeasible rows."""
    one = GOOD.replace("model: llama-3.1-8b", "model: llama-3.1-8b\nhardware: {bonded_sram: {layers: 2}}") \
        .replace("hardware: cs3, count: 1", "hardware: h100, count: 1, spec_decode: {draft_tokens: 3, acceptance_rate: 0.7}")
    msgs = load_problems(write("s.yaml", one))
    assert any("bonded SRAM layers stack on wafers; 'h100' is a gpu" in m for m in msgs), msgs
    assert any("has no draft (MTP) head" in m for m in msgs), msgs
    swept = GOOD + """
sweep:
  - name: g
    axes:
      deployment.hardware: [cs3, h100]
      hardware.bonded_sram.layers: [0, 2]
"""
    assert len(load(write("w.yaml", swept)).points) == 4


def test_groups_of_one_name_and_broken_groups_report_without_a_traceback(write):
    """Found by a property test: an empty group, a group whose axes are not a mapping and a
    third of the same name, whose point must still be checked against its own axes."""
    p = write("s.yaml", GOOD + """
sweep:
  - {name: a, axes: {}}
  - {name: a, axes: null}
  - {name: a, axes: {deployment.count: [0]}}
""")
    msgs = load_problems(p)
    assert any("deployment.count: input should be greater than or equal to 1" in m for m in msgs), msgs
    assert any("sweep[0].axes:" in m for m in msgs) and any("sweep[1].axes:" in m for m in msgs), msgs


_paths = st.sampled_from(["deployment.count", "deployment.hardware", "model", "workload.context_tokens",
                          "deployment.precision", "deployment.precision.weights", "hardware.bonded_sram.layers",
                          "economics.pue", "sweep", "name", "", "deployment.spec_decode", "workload.prompt_dist",
                          "deployment.disaggregated.prefill.hardware"])
_vals = st.one_of(st.integers(-5, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                  st.sampled_from(["cs3", "h100", "b2000", "fp8", "fp6", "llama-3.1-8bb"]), st.none(),
                  st.lists(st.integers(0, 3), max_size=2),
                  st.dictionaries(st.sampled_from(["weights", "kv", "hardware", "dist", "file"]),
                                  st.sampled_from(["fp8", "fp6", "cs3", "empirical", "nofile.csv", 3]), max_size=2))
_group = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=2), st.lists(st.integers(), max_size=1), st.none()),
     "axes": st.one_of(st.dictionaries(_paths, st.lists(_vals, max_size=3), max_size=3), _vals)},
    optional={"mode": st.sampled_from(["zip", "product", "bogus"]),
              "skip": st.lists(st.dictionaries(_paths, _vals, max_size=2), max_size=2)})


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(groups=st.lists(_group, max_size=3), sets=st.lists(st.tuples(_paths, _vals), max_size=2))
def test_broken_sweeps_and_overrides_list_their_problems_once_and_never_traceback(groups, sets, tmp_path_factory):
    """Random sweep groups (bad names, axes, modes, skips) over a valid base, then random --set
    overrides: either it loads, or every problem is reported once, located or flagged."""
    import json
    import yaml
    from planner.plan.scenario import override
    p = tmp_path_factory.mktemp("s") / "s.yaml"
    data = yaml.safe_load(GOOD)
    if groups:
        data["sweep"] = groups
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        loaded = load(p)
        override(loaded, [f"{k}={json.dumps(v)}" for k, v in sets])  # JSON is YAML
    except ConfigError as e:
        shown = [str(x) for x in e.problems]
        assert shown and len(set(shown)) == len(shown), shown
