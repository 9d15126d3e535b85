"""Validation gaps and `plan run` failures of issue 12 (findings 6 and 7): every quantity finite
and bounded, contexts within the model's window, trace and empirical files checked before
anything runs, safe output names, --set read like a file, child specs named, engine errors
in one line."""
import pytest
from click.testing import CliRunner

from planner import catalog
from planner.cli import main
from planner.config.errors import ConfigError
from planner.plan.scenario import load, override

BASE = """
name: v
model: llama-3.1-70b
deployment: {hardware: cs3, count: 4}
workload:
  context_tokens: CONTEXT
  output_tokens: 64
  requests: 40
EXTRA
"""


def scenario(write, context="1280", extra="", name="s.yaml"):
    return write(name, BASE.replace("CONTEXT", context).replace("EXTRA", extra))


def test_context_beyond_the_window_is_refused_unless_allowed(write):
    """10M tokens on a 128K model: an error at the key, unless workload.allow_beyond_window.
    Fails on the original code: it was accepted (and simulated as 'feasible')."""
    with pytest.raises(ConfigError) as e:
        load(scenario(write, "10000000"))
    assert ":5:19: workload.context_tokens: a context of 10,000,000 tokens is beyond llama-3.1-70b's " \
           "context window (131,072); set workload.allow_beyond_window: true" in str(e.value)


@pytest.mark.parametrize("extra, where", [
    ("  arrival: {process: closed, users: 4, think_s: .inf}", "workload.arrival.think_s"),
    ("  arrival: {process: closed, users: 4, think_s: 1e999 us}", "workload.arrival.think_s"),
    ("  arrival: {process: poisson, rate_per_s: .inf}", "workload.arrival.rate_per_s"),
    ("economics: {pue: 1e308}", "economics.pue"),
    ("economics: {amortisation_years: 1e-300}", "economics.amortisation_years"),
    ("deployment: {hardware: cs3, count: 123456789}", "deployment.count"),
])
def test_infinite_and_overflowing_quantities_are_refused(write, extra, where):
    """Fails on the original code: each was accepted and ended in a ZeroDivisionError or
    InvariantError traceback, inf costs, or (count) a hang."""
    text = BASE.replace("CONTEXT", "1280").replace("EXTRA", "")
    if extra.startswith("  "):
        text = text.rstrip("\n") + "\n" + extra + "\n"
    elif extra.startswith("deployment"):
        text = text.replace("deployment: {hardware: cs3, count: 4}", extra)
    else:
        text += extra + "\n"
    with pytest.raises(ConfigError) as e:
        load(write("q.yaml", text))
    assert any(p.path == where and p.line for p in e.value.problems), str(e.value)


def test_allow_beyond_window_flag(write):
    """Fails on the original code: allow_beyond_window was an unknown key."""
    p = write("w.yaml", BASE.replace("CONTEXT", "200000").replace("EXTRA", "").rstrip("\n")
              + "\n  allow_beyond_window: true\n")
    assert load(p).points[0].scenario.workload.allow_beyond_window


def test_hardware_quantity_overflow_is_refused(tmp_path):
    """A child spec with `io.latency: 1e999 us` (infinite). Fails on the original code:
    accepted; `plan estimate` then died with ZeroDivisionError."""
    d = tmp_path / "hardware_specs"
    d.mkdir()
    (d / "x.yaml").write_text("name: x\nextends: cs3\nio: {bandwidth: 150 GB/s, latency: 1e999 us, source: test}\n")
    with pytest.raises(ConfigError) as e:
        catalog.load_hardware(str(d / "x.yaml"))
    assert "io.latency: must be finite" in str(e.value) and "x.yaml:3:" in str(e.value)


def test_child_spec_needs_its_own_name(tmp_path):
    """Fails on the original code: the child silently took its parent's name ('cs3')."""
    d = tmp_path / "hardware_specs"
    d.mkdir()
    (d / "y.yaml").write_text("extends: cs3\ndescription: bigger\nmemory: {capacity: 50 GB, source: test}\n")
    with pytest.raises(ConfigError, match="'name' is missing"):
        catalog.load_hardware(str(d / "y.yaml"))


@pytest.mark.parametrize("name, ok", [("..", False), (".", False), ("a/b", False), ("", False),
                                      ("my.run-1", True)])
def test_scenario_name_is_one_safe_folder(write, name, ok):
    """Fails on the original code: '..' and '.' passed (outputs went into the working folder)."""
    p = write("n.yaml", BASE.replace("name: v", f"name: '{name}'").replace("CONTEXT", "1280").replace("EXTRA", ""))
    if ok:
        assert load(p).scenario.name == name
    else:
        with pytest.raises(ConfigError, match="name: must be one folder name"):
            load(p)


def test_set_reads_values_as_the_file_does(write):
    """`requests: 1e3` in a file is 1,000; so is --set workload.requests=1e3. Fails on the
    original code: --set read 1e3 as the string '1e3' and refused it."""
    loaded = load(scenario(write))
    assert override(loaded, ["workload.requests=1e3"]).scenario.workload.requests == 1000


def test_request_cap_is_a_located_error(write):
    """Fails on the original code: requests: 1e7 was accepted (and the run hung for hours)."""
    with pytest.raises(ConfigError) as e:
        load(write("r.yaml", BASE.replace("CONTEXT", "1280").replace("EXTRA", "").replace("requests: 40",
                                                                                         "requests: 1e7")))
    assert "workload.requests: input should be less than or equal to 2000000" in str(e.value)
    closed = BASE.replace("CONTEXT", "1280").replace("EXTRA", "").replace("requests: 40", "concurrent_users: 1000000")
    with pytest.raises(ConfigError, match="workload.concurrent_users: a closed loop of 1,000,000 users"):
        load(write("c.yaml", closed))
    assert load(write("c2.yaml", closed.rstrip("\n") + "\n  simulate: false\n"))


TRACE = "arrival_s,prompt_tokens,output_tokens\n0.0,512,16\n0.1,abc,16\n"


def trace_scenario(write, trace_text=None, file="t.csv"):
    if trace_text is not None:
        write("t.csv", trace_text)
    return scenario(write, "1280", f"  arrival: {{process: trace, trace: {file}}}")


def test_validate_and_sweep_check_traces(write, tmp_path):
    """A missing trace file and text in a number column: `plan validate` and `plan sweep` exit
    2 with located lines before anything runs. Fails on the original code: validate said ok
    and the sweep exited 0 with the error hidden in run.json."""
    run = CliRunner().invoke
    p = trace_scenario(write, file="nope.csv")
    r = run(main, ["validate", str(p)])
    assert r.exit_code == 2 and f"{p}:8:36:" in r.stderr and "workload.arrival.trace: file not found" in r.stderr
    p = trace_scenario(write, TRACE)
    r = run(main, ["validate", str(p)])
    assert r.exit_code == 2 and "t.csv:3:1: arrival_s must be a number" in r.stderr
    out = tmp_path / "out"
    r = run(main, ["sweep", str(p), "-o", str(out), "-q", "-j", "1"])
    assert r.exit_code == 2 and "t.csv:3:1" in r.stderr and not (out / "run.json").exists()


def test_empirical_file_checked_by_validate(write):
    """Fails on the original code: validate said ok; the run then refused the row."""
    write("lens.csv", "n\n16\n1e999\n")
    p = scenario(write, "1280", "  output_dist: {dist: empirical, file: lens.csv, column: n}")
    r = CliRunner().invoke(main, ["validate", str(p)])
    assert r.exit_code == 2 and "lens.csv:3:1: n: must be a whole number from 1 to 1,000,000,000" in r.stderr
