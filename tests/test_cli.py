"""Every command through click's CliRunner: outputs, exit codes, no tracebacks."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main

from tests.conftest import REPO, device


@pytest.fixture
def run():
    runner = CliRunner()

    def _run(*args):
        r = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert "Traceback" not in r.output
        return r
    return _run


def test_validate_ok_and_error(run, write):
    r = run("validate", REPO / "scenarios" / "deepseek.yaml", REPO / "hardware_specs" / "cs3.yaml")
    assert r.exit_code == 0 and "ok" in r.output
    bad = write("bad.yaml", """
        name: bad
        model: deepseek-r1
        deployment: {hardwre: cs3}
        workload: {context_tokens: 1e4, output_tokens: 20000}
    """)
    r = run("validate", bad)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert f"{bad}:3:14: deployment.hardwre: unknown key; did you mean 'hardware'?" in lines
    assert any(line.startswith(f"{bad}:4:11: workload: output_tokens (20000) must be <") for line in lines)


def test_list_and_show(run):
    r = run("list", "hardware")
    assert r.exit_code == 0 and "cs3" in r.output and "21 PB/s" in r.output and "hypothetical" in r.output
    r = run("list", "models")
    assert r.exit_code == 0 and "deepseek-v3" in r.output and "70,272" in r.output
    r = run("show", "hardware", "cs3")
    assert r.exit_code == 0 and "source:" in r.output and "capacity: 44000000000.0" in r.output
    r = run("show", "hardware", "cs9")
    assert r.exit_code == 2 and "no hardware named 'cs9'; did you mean" in r.output


def test_estimate_json_keys(run):
    r = run("estimate", "--model", "deepseek-v3", "--hardware", "cs3", "--precision", "fp8", "--context", "32768",
            "--json")
    assert r.exit_code == 0
    d = json.loads(r.output)
    for k in ("fits", "devices", "stages", "weight_bytes", "kv_bytes_per_token", "max_concurrent_sequences",
              "decode_tok_s_per_user", "aggregate_tok_s", "ttft_s", "bottleneck"):
        assert k in d
    assert d["fits"] and d["kv_bytes_per_token"] == 70272 / 2 and d["devices"] == 18


def test_estimate_infeasible_exits_1_with_reason(run):
    r = run("estimate", "--model", "deepseek-v3", "--hardware", "cs3", "--count", "8")
    assert r.exit_code == 1 and "weights do not fit" in r.output


def test_estimate_bad_inputs_exit_2(run):
    assert run("estimate", "--model", "nope", "--hardware", "cs3").exit_code == 2
    assert run("estimate", "--model", "llama-3.1-8b", "--hardware", "cs3", "--precision", "fp9").exit_code == 2
    assert run("estimate", "--model", "llama-3.1-8b", "--hardware", "cs3", "--count", "0").exit_code == 2
    assert run("estimate", "--model", "llama-3.1-8b", "--hardware", "bonded-sram").exit_code == 2
    r = run("estimate", "--model", "llama-3.1-8b", "--hardware", "h100", "--bonded-layers", "2")
    assert r.exit_code == 2 and "stack on wafers; 'h100' is a gpu" in r.output
    r = run("estimate", "--model", "llama-3.1-8b", "--hardware", "/nonexistent/x.yaml")
    assert r.exit_code == 2 and "hardware spec file '/nonexistent/x.yaml' not found" in r.output
    r = run("estimate", "--model", "llama-3.1-8b", "--hardware", "h100", "--spec-decode", "3", "0.7",
            "--draft-layers", "2", "--draft-params", "foo")
    assert r.exit_code == 2 and r.output.count("'foo'") == 1, r.output


def test_groq_is_listed_as_the_sram_chip_calibrate_groups_it_as(run):
    assert any(line.split()[:2] == ["groq-lpu", "sram-chip"] for line in run("list", "hardware").output.splitlines())
    assert "(sram-chip spec)" in run("validate", REPO / "hardware_specs" / "groq-lpu.yaml").output


def test_estimate_separate_draft_model(run):
    """--draft-layers/--draft-params describe a separate draft model (a dense model has no MTP
    head): the CLI's figures are the step model's for that SpecDecode, and a deeper draft is slower."""
    from planner import catalog
    from planner.config.schema import SpecDecode
    from planner.physics.point import Config
    from planner.plan.estimate import estimate
    args = ("estimate", "--model", "llama-3.3-70b", "--hardware", "cs3", "--count", "4", "--batch", "1",
            "--spec-decode", "3", "0.7", "--json")
    r = run(*args, "--draft-layers", "16", "--draft-params", "1.2B")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    cfg = Config(catalog.load_model("llama-3.3-70b"), catalog.load_hardware("cs3"), count=4, batch=1,
                 spec_decode=SpecDecode(draft_tokens=3, acceptance_rate=0.7, draft_layers=16, draft_params=1.2e9))
    assert d["decode_tok_s_per_user"] == pytest.approx(estimate(cfg).decode_tok_s_per_user, rel=1e-12)
    shallow = json.loads(run(*args, "--draft-layers", "1", "--draft-params", "1.2B").output)
    assert shallow["decode_tok_s_per_user"] > d["decode_tok_s_per_user"]
    no_head = run(*args)  # no draft head and no draft model: a usage mistake, says what to add
    assert no_head.exit_code == 2 and "--draft-params" in no_head.output
    assert run("estimate", "--model", "llama-3.3-70b", "--hardware", "cs3", "--draft-layers", "16").exit_code == 2
    alone = run(*args, "--draft-params", "1.2B")  # a separate draft's depth is not guessed
    assert alone.exit_code == 2 and "--draft-layers" in alone.output
    bad = run(*args, "--draft-layers", "16", "--draft-params", "1.2Q")
    assert bad.exit_code == 2 and "--draft-params" in bad.output and "Value error" not in bad.output


def test_estimate_lengths_fit_the_context(run):
    """The KV holds the context: an output or prompt + output beyond it is refused, not cut down."""
    base = ("estimate", "--model", "llama-3.1-8b", "--hardware", "h100")
    r = run(*base, "--context", "8k", "--prompt", "4k", "--output", "8k")
    assert r.exit_code == 2 and "8,192" in r.output
    r = run(*base, "--context", "8k", "--prompt", "8k")  # + the default 1,024 output tokens
    assert r.exit_code == 2 and "prompt + output (9,216) > context (8,192)" in r.output
    assert run(*base, "--context", "512").exit_code == 2  # the default output would leave no prompt
    ok = json.loads(run(*base, "--context", "9k", "--prompt", "8k", "--json").output)
    assert ok["prompt_tokens"] == 8192 and ok["prefill_chunk_tokens"] == 2048 and ok["spec_decode"] is None


def test_estimate_prefill_chunk(run):
    """--prefill-chunk reaches the estimate: a 32K prompt on 8 x H100 in one chunk of 32k is the
    step model's single prefill pass (the flow shop of one chunk), in 2k chunks sixteen passes."""
    from planner import catalog
    from planner.physics.point import Config, build_point
    args = ("estimate", "--model", "llama-3.1-70b", "--hardware", "h100", "--count", "8", "--context", "33k",
            "--prompt", "32k", "--output", "256", "--json")
    one = json.loads(run(*args, "--prefill-chunk", "32k").output)
    small = json.loads(run(*args, "--prefill-chunk", "2k").output)
    sm = build_point(Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("h100"), count=8,
                            context=33 * 1024, prompt=32 * 1024, output=256)).steps
    assert one["ttft_s"] == pytest.approx(sm.ttft_s(32 * 1024, 0, 32 * 1024), rel=1e-12)
    assert small["ttft_s"] == pytest.approx(sm.ttft_s(32 * 1024, 0, 2048), rel=1e-12)
    assert small["ttft_s"] > one["ttft_s"]  # sixteen passes pay the per-layer fixed costs sixteen times
    assert run(*args, "--prefill-chunk", "0").exit_code == 2


def test_estimate_mla_attention(run):
    """--mla-attention reaches the placement: DeepSeek-R1 on 8 H200 at batch 1 with tensor-parallel
    attention is the step model's figure for that layout, and differs from data-parallel attention
    (one GPU then holds the sequence's whole attention)."""
    from planner import catalog
    from planner.physics.point import Config
    from planner.plan.estimate import estimate
    args = ("estimate", "--model", "deepseek-r1", "--hardware", "h200", "--count", "8", "--precision", "fp8",
            "--batch", "1", "--json")
    tp = json.loads(run(*args, "--mla-attention", "tp").output)
    dp = json.loads(run(*args).output)
    cfg = Config(catalog.load_model("deepseek-r1"), catalog.load_hardware("h200"), count=8, weights="fp8", batch=1,
                 mla_attention="tp")
    assert tp["decode_tok_s_per_user"] == pytest.approx(estimate(cfg).decode_tok_s_per_user, rel=1e-12)
    assert dp["mla_attention"] == "dp" and tp["decode_tok_s_per_user"] != pytest.approx(dp["decode_tok_s_per_user"])
    assert run(*args, "--mla-attention", "ep").exit_code == 2


def test_estimate_gqa_attention(run):
    """--gqa-attention reaches the placement: Qwen3-235B on 8 H200 with data-parallel attention
    holds each sequence's KV once (tensor-parallel attention replicates its 4 KV heads twice over
    8 GPUs), less a copy of the attention weights per further GPU."""
    args = ("estimate", "--model", "qwen3-235b-a22b", "--hardware", "h200", "--count", "8", "--precision", "fp8",
            "--context", "8192", "--json")
    tp, dp = json.loads(run(*args).output), json.loads(run(*args, "--gqa-attention", "dp").output)
    assert tp["gqa_attention"] == "tp" and dp["gqa_attention"] == "dp"
    tp_n, dp_n = tp["max_concurrent_sequences"], dp["max_concurrent_sequences"]
    assert 1.8 * tp_n < dp_n < 2 * tp_n
    assert run(*args, "--gqa-attention", "ep").exit_code == 2


def test_estimate_human_output(run):
    r = run("estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--count", "4", "--batch", "1")
    assert r.exit_code == 0 and "tok/s per user" in r.output and "bottleneck" in r.output


def test_calibrate_reports_errors(run):
    r = run("calibrate", "--family", "groq-lpu")
    assert r.exit_code == 0, r.output
    assert "degrees of freedom" in r.output and "held out by leave-one-out" in r.output
    assert "summary" in r.output and "sram-chip" in r.output and "reference rows" in r.output
    assert run("calibrate", "--family", "groqq").exit_code == 2


def test_calibrate_write_into_an_installed_catalog_says_so(run, tmp_path, monkeypatch):
    """From a wheel the catalog is the package's own copy (_hardware_specs): --write still
    writes it, and says that a reinstall replaces it; a checkout's folder gets no such note."""
    import shutil
    from planner import catalog
    monkeypatch.chdir(tmp_path)
    for folder, note in (("_hardware_specs", True), ("hardware_specs", False)):
        specs = tmp_path / "lib" / folder
        shutil.copytree(REPO / "hardware_specs", specs)
        monkeypatch.setattr(catalog, "hardware_dir", lambda specs=specs: specs)
        r = run("calibrate", "--family", "groq-lpu", "--no-cv", "--write")
        assert r.exit_code == 0 and f"wrote {specs / 'groq-lpu.yaml'}" in r.output, r.output
        assert ("installed package's copy" in r.output) == note, r.output


def test_sweep_writes_csv_and_run_json(run, write, tmp_path):
    sc = write("mini.yaml", """
        name: mini
        model: llama-3.1-70b
        deployment: {hardware: cs3}
        workload: {context_tokens: 8192, output_tokens: 1024, concurrent_users: 64}
        sweep:
          - name: wafers
            axes:
              deployment.count: [2, 4, 8]
              deployment.precision: [{weights: bf16, kv: bf16}, {weights: fp8, kv: fp8}]
          - name: gpus
            axes:
              deployment.hardware: [h100]
              deployment.count: [8]
    """)
    out = tmp_path / "out"
    r = run("sweep", sc, "-o", out, "-q")
    assert r.exit_code == 0
    df = pd.read_csv(out / "results.csv")
    # the answer first; a swept value a result column already shows (the precision) is not repeated
    assert len(df) == 7 and list(df.columns[:6]) == ["point", "model", "hardware", "weights_precision",
                                                     "kv_precision", "context_tokens"]
    assert "deployment.count" in df.columns and "deployment.precision.weights" not in df.columns
    assert set(df[df.group == "gpus"].hardware) == {"h100"} and list(df.weights_precision[:2]) == ["bf16", "fp8"]
    infeasible = df[~df.feasible]
    assert (infeasible.reason.str.len() > 0).all() and "weights do not fit" in infeasible.reason.iloc[0]
    for col in ("decode_tok_s_per_user_p50", "ttft_p99_s", "tpot_p99_s", "decode_tok_s_per_user_analytic",
                "ttft_analytic_s", "cost_usd_per_mtok_out", "capex_usd", "power_kw", "bottleneck", "config_hash",
                "seed"):
        assert col in df.columns
    assert (df[df.feasible].throughput_source == "sim").all()
    meta = json.loads((out / "run.json").read_text())
    assert meta["points"] == 7 and meta["scenario_sha256"]


def test_run_writes_summary_requests_timeseries(run, tmp_path):
    out = tmp_path / "r"
    r = run("run", REPO / "scenarios" / "llama-70b.yaml", "--set", "workload.requests=300", "-o", out)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["feasible"] and s["throughput_source"] == "sim" and s["sim_requests"] == 300
    assert s["ttft_p99_s"] >= s["ttft_p50_s"] > 0 and len(s["stage_utilisation"]) == 4
    req = pd.read_csv(out / "requests.csv")
    assert len(req) == 300 and (req.finish_s >= req.first_token_s).all()
    ts = pd.read_csv(out / "timeseries.csv")
    assert list(ts.columns) == ["t_s", "replica", "batch", "queued", "kv_bytes"] and len(ts) > 10


def test_run_says_why_the_slo_was_missed(run, tmp_path):
    """On the console, not only in summary.json; one replica said in the singular."""
    r = run("run", REPO / "scenarios" / "llama-70b.yaml", "--set", "deployment.hardware=h100", "--set",
            "deployment.count=8", "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "SLO not met: SLO missed even at the lowest load" in r.output and "(1 replica)" in r.output, r.output
    assert "decode_tok_s_per_user_p50" in r.output and "the replica carried" in r.output


def test_run_bad_override_exits_2(run):
    r = run("run", REPO / "scenarios" / "llama-70b.yaml", "--set", "deployment.kv_policy=forget")
    assert r.exit_code == 2 and r.output.startswith("--set: deployment.kv_policy:")
    assert run("run", REPO / "scenarios" / "llama-70b.yaml", "--set", "novalue").exit_code == 2


def test_a_context_beyond_the_window_needs_saying_so(run):
    args = ("--model", "llama-2-70b", "--hardware", "cs3", "--context", "131072")
    r = run("estimate", *args)
    assert r.exit_code == 2 and "beyond llama-2-70b's context window (4,096); add --allow-beyond-window" in r.output
    assert run("estimate", *args, "--allow-beyond-window").exit_code == 0
    r = run("size", "--model", "llama-2-70b", "--users", "10", "--tok-s-per-user", "20", "--context", "131072",
            "--hardware", "cs3", "--analytic-only")
    assert r.exit_code == 2 and "add --allow-beyond-window" in r.output


def test_bonded_sram_widens_the_wafer_band(run):
    plain = json.loads(run("estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--precision", "fp8",
                           "--count", "4", "--batch", "1", "--json").output)
    bonded = json.loads(run("estimate", "--model", "llama-3.1-70b", "--hardware", "cs3", "--precision", "fp8",
                            "--count", "4", "--batch", "1", "--bonded-layers", "1", "--json").output)
    assert bonded["hypothetical"] and not plain["hypothetical"]
    assert bonded["speed_band_low"] < plain["speed_band_low"] and bonded["speed_band_low"] <= 0.5
    assert "widened for bonded SRAM" in bonded["speed_band_source"]
    base, wide = device("cs3").speed_band, device("cs3", layers=1).speed_band
    assert wide == (min(base[0], 0.5), max(base[1], 1.5))
