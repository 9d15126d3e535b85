"""Calibration: the data file, the fitter (against data made from known parameters), held-out
validation on the shipped data, and write-back."""
import csv
import math
import shutil

import numpy as np
import pytest

from planner import calibration as calibrate
from planner import catalog
from planner.config.errors import ConfigError
from tests.conftest import shape

POINTS = calibrate.read_points()
GROQ = [f for f in calibrate.FAMILIES if f.head == "groq-lpu"]


@pytest.fixture(scope="module")
def shipped_fits():
    """Every family fitted on the shipped data with its held-out refits (the slow part of the
    suite: about 25-75 s on one core), on two processes as CI has."""
    return calibrate.fit(POINTS, jobs=2)


def test_calibration_files_hold_the_domain_points_with_sources():
    have = {(p.hardware, p.model, p.value) for p in POINTS}
    for needed in [("cs3", "llama-3.1-8b", 1800), ("cs3", "llama-3.1-70b", 450), ("cs3", "llama-3.3-70b", 2314),
                   ("cs3", "undisclosed", 1000), ("h100", "llama-3.1-70b", 128), ("b200", "deepseek-r1", 75)]:
        assert needed in have
    assert all(p.date and len(p.source) > 10 for p in POINTS)
    # the InferenceX B200 point sits at concurrency ~160, not 30 (DOMAIN.md section 8)
    assert any(p.hardware == "b200" and p.model == "deepseek-r1" and p.value == 75 and p.batch == 160 for p in POINTS)
    roles = {p.role for p in POINTS}
    assert roles == {"calibrate", "validate", "reference"}
    assert sum(p.role == "validate" for p in POINTS) >= 30


def _synthetic(tmp_path, truth):
    """Groq rows whose 'measurements' are the model's own predictions at known parameters."""
    spec = calibrate.with_params(catalog.load_hardware("groq-lpu"), truth)
    rows = []
    for i, (model, prec) in enumerate([("llama-2-7b", "bf16"), ("llama-3.1-8b", "bf16"), ("mixtral-8x7b", "bf16"),
                                       ("llama-2-70b", "fp8"), ("gpt-oss-20b", "mxfp4"), ("qwen3-32b", "bf16")]):
        r = {c: "" for c in calibrate.COLUMNS}
        r.update(date="2024-01-01", source="synthetic: predictions at known parameters", hardware="groq-lpu",
                 model=model, precision=prec, metric="decode_tok_s_per_user", batch="1", prompt="1024",
                 output="1024", context="2048", role="calibrate" if i < 5 else "validate", value="1")
        p = calibrate.parse_row(2, r)
        r["value"] = f"{calibrate.predict(p, spec):.9g}"
        rows.append(r)
    path = tmp_path / "synthetic.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_fitter_recovers_known_parameters_and_holds_out_honestly(tmp_path):
    truth = {"layer_base": 31e-6, "io.latency": 2e-6}
    pts = calibrate.read_points(_synthetic(tmp_path, truth))
    (fit,) = calibrate.fit(pts, GROQ)
    for name, value in truth.items():
        assert fit.params[name][1] == pytest.approx(value, rel=0.02)
    assert fit.cv == "leave-one-out" and fit.dof == 5 - 2
    for x in fit.predictions:
        assert abs(x.held_out_error) < 0.02  # exact data: a fit without the point still predicts it


def test_validate_rows_never_move_the_fit(tmp_path):
    path = _synthetic(tmp_path, {"layer_base": 31e-6, "io.latency": 2e-6})
    base = calibrate.fit(calibrate.read_points(path), GROQ, cross_validate=False)[0].params
    rows = list(csv.DictReader(path.open()))
    rows[-1]["value"] = str(float(rows[-1]["value"]) * 10)  # a wild validate row
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    fit = calibrate.fit(calibrate.read_points(path), GROQ, cross_validate=False)[0]
    assert fit.params == base
    wild = [x for x in fit.predictions if x.point.role == "validate"][0]
    assert wild.held_out_error == pytest.approx(-0.9, abs=0.01)


@pytest.mark.slow
def test_held_out_errors_on_the_shipped_data(shipped_fits):
    """The figures the README reports. The issue's targets (GPU median <= 15% over >= 40 points,
    wafer <= 20% over >= 8 points from >= 4 models, no point beyond 40%) are asserted where they
    hold; where they do not yet, the bound is today's figure, so a regression fails."""
    s = {r["group"]: r for r in calibrate.summary(shipped_fits)}
    gpu, wafer, chip = s["gpu"], s["wafer"], s["sram-chip"]
    # met: enough held-out points and models
    assert gpu["held_out_points"] >= 40 and wafer["held_out_points"] >= 8 and wafer["models"] >= 4
    # since decode efficiency grows with a step's rows (2026-11-30: held out 14.4% -> 14.1%,
    # validate rows 23% -> 17.5%) and all-reduces take their measured times by message size
    # (2026-11-30: held out 14.1% -> 9.9%, in sample 12.9% -> 8.8%, validate rows 17.0%), and an
    # MLA layer pays its own fixed time on the B200 family (2026-11-30: held out 10.0% -> 9.5%,
    # validate rows 17% -> 15%, worst 78% -> 67%); then (2026-12-01) 29 other-length rows of the
    # TensorRT-LLM offline table joined as validate rows, output-heavy ones 1.2-2.1x too fast
    # (README "Other sequence lengths"): held out 9.7% -> 10.8%, validate rows 14% -> 23%; then
    # (2026-12-01) offline rows at TensorRT-LLM's KV accounting of sliding windows, its batch cap per
    # scheduler and the run's finite requests (README "Offline maxima"): 10.4%, validate rows 16%;
    # then (2026-12-01) GQA models' data-parallel attention where their recipes run it: 10.1%, 13%;
    # then (2026-12-01) a client-measured TTFT's serving overhead (README "Calibration"): in sample
    # 8.9% -> 8.2%, held out 10.13% -> 10.15%; then (2026-12-01) GEMMs and attention as kernels run
    # in turn, each its own roofline, with HBM efficiency a measured streaming read (0.90, 0.91), not
    # fitted (README "Attention after the GEMMs"): in sample 8.2% -> 7.6%, held out 10.15% -> 9.0%,
    # worst 61% -> 57%, validate rows 13.2% -> 14.4% but none beyond 40% (3 before, worst 61%)
    assert gpu["held_out_median"] <= 0.092 and gpu["in_sample_median"] <= 0.078 and gpu["held_out_max"] <= 0.58
    gpu_validate = [abs(x.error) for f in shipped_fits if f.family.group == "gpu" for x in f.predictions
                    if x.point.role == "validate"]
    assert len(gpu_validate) >= 80 and np.median(gpu_validate) <= 0.145  # 14% over 53 before those 29 rows
    assert max(gpu_validate) <= 0.401  # 39.97% today (calibration.csv:138), the 40%
    # met since the launch profile's per-byte layer time and Kimi K2.6 at its W4A16 release
    # format (2026-11-30: 26.3% -> 13.9%, 3 parameters on 9 points)
    assert wafer["held_out_median"] <= 0.20 and wafer["in_sample_median"] <= 0.07
    # not yet met (README "Calibration" says why): worst held-out points beyond 40% in every
    # group; today's figures bound a regression
    assert wafer["held_out_max"] <= 0.50
    # Groq since a token pays a hop per chip it crosses (2026-11-30: median 12.7% -> 7.9%, worst
    # 61% -> 42% over 11 points); then four Q4-2025 docs-table rows (Llama 4 Scout, Maverick,
    # Kimi K2, Qwen3-32B) joined as validate rows: 15.9%, worst 59% (Maverick)
    assert chip["held_out_points"] >= 15 and chip["held_out_median"] <= 0.165 and chip["held_out_max"] <= 0.60
    # 0.67 before the output-heavy offline rows, 1.13 with them, 0.61 with the offline rule above,
    # 0.59 (Groq's Maverick) since the GPU kernels' rooflines are summed
    assert s["overall"]["held_out_max"] <= 0.60
    for f in shipped_fits:
        assert f.dof > 0  # never as many parameters as points


def test_offline_maxima_run_at_the_batch_trtllm_bench_sets():
    """A row with no stated batch runs at what TensorRT-LLM holds: its KV cache manager gives a
    sliding-window layer as many blocks as a full one (gpt-oss: 18 of 36 layers hold a 128-token
    window, so at 2,000 tokens it holds (18 x 2000 + 18 x 128) / (36 x 2000) of the planner's
    sequences), capped at 2,048 per scheduler for MXFP4 (one scheduler per GPU for a MoE model's
    attention data parallelism) and at the run's requests (3,000 for 1000/1000)."""
    from planner.calibration.fit import predict_prepared, prepare
    rows = {(p.hardware, p.model): p for p in POINTS if p.batch is None and p.role == "validate" and p.prompt == 1000}
    p = rows[("gb200-nvl72", "gpt-oss-120b")]
    spec = catalog.load_hardware(p.hardware)
    pp = prepare(p, spec)
    assert int((pp.built.steps.shape.window == 128).sum()) == 18 and pp.built.steps.shape.layers == 36
    held = math.floor(pp.built.placement.max_concurrent * (18 * 2000 + 18 * 128) / (36 * 2000))
    assert 1000 < held < 2048 and p.requests == 3000  # the KV binds, not the cap
    assert predict_prepared(pp, spec) == pytest.approx(_waves(p, spec, held), rel=1e-12)
    p = rows[("b200", "llama-4-maverick")]  # more than 4,096 fit, the 3,000 requests bind
    spec = catalog.load_hardware(p.hardware)
    pp = prepare(p, spec)
    assert pp.built.placement.max_concurrent > 4096
    assert predict_prepared(pp, spec) == pytest.approx(_waves(p, spec, 3000), rel=1e-12)


def test_the_offline_batch_cap_is_per_scheduler():
    """4,096 per scheduler for a tuned precision, 2,048 for MXFP4; a MoE model under attention
    data parallelism has one scheduler per GPU, a dense model or tensor-parallel attention one;
    a row dated after TensorRT-LLM's KV manager V2 holds what the planner's KV model holds."""
    import dataclasses
    from planner.calibration.data import offline_batch
    free = {p.model: dataclasses.replace(p, requests=None) for p in POINTS
            if p.batch is None and p.model in ("llama-3.3-70b", "qwen3-235b-a22b", "gpt-oss-120b")}
    dense, moe = shape("llama-3.3-70b"), shape("qwen3-235b-a22b")
    assert offline_batch(dataclasses.replace(free["llama-3.3-70b"], precision="fp8"), 10_000, dense, 8) == 4096
    q = dataclasses.replace(free["qwen3-235b-a22b"], precision="fp8", attention_parallel="dp")
    assert offline_batch(q, 10_000, moe, 8) == 10_000 and offline_batch(q, 40_000, moe, 8) == 8 * 4096
    assert offline_batch(dataclasses.replace(q, attention_parallel="tp"), 10_000, moe, 8) == 4096
    assert offline_batch(dataclasses.replace(q, precision="mxfp4"), 10_000, moe, 2) == 2 * 2048
    g = dataclasses.replace(free["gpt-oss-120b"], prompt=1000, output=1000, context=2000, date="2025-12")
    windowed = (18 * 2000 + 18 * 128) / (36 * 2000)
    assert offline_batch(g, 1000, shape("gpt-oss-120b"), 1) == math.floor(1000 * windowed)
    assert offline_batch(dataclasses.replace(g, date="2026-09"), 1000, shape("gpt-oss-120b"), 1) == 1000


def _waves(p, spec, batch):
    """A finite run by hand: full waves of ``batch`` at its steady throughput, then the rest."""
    import dataclasses
    from planner.calibration.fit import predict_prepared, prepare

    def steady(b):
        return predict_prepared(prepare(dataclasses.replace(p, batch=b, requests=None), spec), spec)
    full, rest = divmod(p.requests, batch)
    return p.requests / (full * batch / steady(batch) + (rest / steady(rest) if rest else 0.0))


def test_a_finite_run_pays_for_its_last_wave():
    """2.5 batches of requests: two full waves, then one of half a batch, which decodes faster per
    step but not twice as fast, so the run's throughput falls below the steady one."""
    import dataclasses
    from planner.calibration.fit import predict_prepared, prepare
    p = next(p for p in POINTS if p.batch is None and p.model == "llama-3.3-70b" and p.hardware == "h200")
    spec = catalog.load_hardware(p.hardware)
    q = dataclasses.replace(p, batch=100, requests=250)
    steady = {b: predict_prepared(prepare(dataclasses.replace(q, batch=b, requests=None), spec), spec)
              for b in (100, 50)}
    run = predict_prepared(prepare(q, spec), spec)
    assert run == pytest.approx(250 / (2 * 100 / steady[100] + 50 / steady[50]), rel=1e-12)
    assert steady[50] < run < steady[100]


def test_a_balanced_router_row_carries_no_expert_imbalance():
    """A row whose source routes tokens evenly (``routing: balanced``, as AIConfigurator's grid
    with ``--routing balanced``) is predicted with ``ep_imbalance`` 1: its busiest GPU carries the
    mean expert load. A row with the engine's own router (blank) keeps the family's figure."""
    import dataclasses
    from planner.calibration.fit import predict_prepared, prepare
    p = next(p for p in POINTS if p.file.endswith("calibration_aic.csv") and p.model == "qwen3-235b-a22b"
             and p.hardware == "b200" and p.metric == "tpot_s" and p.batch == 256)
    assert p.routing == ""
    spec = catalog.load_hardware("b200")
    assert spec.scale_up.ep_imbalance > 1.1
    even = calibrate.with_params(spec, {"ep_imbalance": 1.0})
    balanced = dataclasses.replace(p, routing="balanced")
    assert predict_prepared(prepare(balanced, spec), spec) == \
        pytest.approx(predict_prepared(prepare(p, even), even), rel=1e-12)
    assert predict_prepared(prepare(balanced, spec), spec) < predict_prepared(prepare(p, spec), spec)
    # rows of one evaluation share resolved devices: a balanced row must not take the engine row's
    devices: dict = {}
    engine = predict_prepared(prepare(p, spec), spec, devices)
    assert predict_prepared(prepare(balanced, spec), spec, devices) < engine


def test_a_client_measured_ttft_adds_the_serving_stack_and_the_planner_does_not():
    """A ``client_ttft_s`` row (InferenceX's benchmark client, to the first streamed chunk) is the
    engine's prefill plus ``client_ttft_overhead``; an engine ``ttft_s`` row and the planner's
    own TTFT are the prefill alone, whatever that overhead is."""
    import dataclasses
    from planner.calibration.fit import predict_prepared, prepare
    from planner.physics.point import Config
    from planner.plan.estimate import estimate
    p = next(p for p in POINTS if p.ref == "calibration.csv:56")
    assert p.metric == "client_ttft_s"
    spec = catalog.load_hardware("b200")
    overhead = spec.latency.client_ttft_overhead
    assert 0.05 < overhead < 0.3  # fitted: ~150 ms (README "Calibration")
    engine = dataclasses.replace(p, metric="ttft_s")
    assert predict_prepared(prepare(p, spec), spec) == \
        pytest.approx(predict_prepared(prepare(engine, spec), spec) + overhead, rel=1e-12)
    cfg = Config(catalog.load_model("deepseek-r1"), spec, count=8, weights="fp8", kv="fp8", context=9216,
                 prompt=7373, output=922, batch=1)
    bare = calibrate.with_params(spec, {"client_ttft_overhead": 1e-4})
    assert estimate(cfg).ttft_s == pytest.approx(estimate(dataclasses.replace(cfg, hardware=bare)).ttft_s, rel=1e-12)


def test_the_routing_cell_reaches_the_row(tmp_path):
    """A CSV row's ``routing`` cell is read into the point (blank: the engine's router)."""
    path = tmp_path / "routing.csv"
    base = {c: "" for c in calibrate.COLUMNS}
    base.update(date="2026-11-29", source="synthetic routing rows", hardware="b200", count="8",
                model="qwen3-235b-a22b", precision="fp8", metric="tpot_s", value="0.01", batch="256",
                role="calibrate")
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.COLUMNS)
        w.writeheader()
        w.writerow({**base, "routing": "balanced"})
        w.writerow(base)
    assert [p.routing for p in calibrate.read_points(path)] == ["balanced", ""]


def test_a_start_replaces_the_shipped_fit_only_from_another_basin():
    """Of fits from several starts (the shipped values first), a later one wins only when its cost
    is lower by more than BETTER_BASIN: the last digits of one flat basin must not move every
    --write a little."""
    from planner.calibration.fit import BETTER_BASIN, best_start
    shipped, near, other, other_near = (np.full(1, v) for v in (0.0, 1.0, 2.0, 3.0))
    assert best_start([(shipped, 2.0), (near, 2.0 * (1 - BETTER_BASIN / 2))]) is shipped
    assert best_start([(shipped, 2.0), (other, 1.9), (other_near, 1.9 * (1 - BETTER_BASIN / 2))]) is other


@pytest.mark.slow
def test_the_b200_fit_reaches_the_shipped_basin_from_the_old_second_one():
    """Least squares is local. Until 2026-12-01 the B200 family had two basins (summed squared
    log errors 1.974 and 1.999, where the thin-GEMM ramp and the expert imbalance traded places:
    decode_half_rows ~159, ep_imbalance ~1.39), and a fit started in the worse one stayed there.
    With the GEMMs and attention as kernels run in turn the ramp no longer stands in for the KV
    reads, and one start from that old point reaches the shipped fit: what --write ships does not
    depend on where the last run left the file."""
    import math
    from planner.calibration.fit import _fit_values, predict_prepared, prepare
    fam = next(f for f in calibrate.FAMILIES if f.head == "b200")
    old = {"layer_dense": 5.33e-05, "layer_moe": 5.09e-05, "layer_mla": 3.16e-05, "alltoall": 3.75e-05,
           "memory.expert_efficiency": 0.761, "compute.decode_half_rows": 159,
           "compute.efficiency": 0.555, "compute.expert_efficiency": 0.52, "compute.fp8_achievable": 0.834,
           "compute.fp4_achievable": 0.451, "ep_imbalance": 1.39, "client_ttft_overhead": 0.149}
    assert set(old) == set(fam.params)
    specs = {h: calibrate.with_params(catalog.load_hardware(h), old) for h in fam.members}
    prep = [prepare(p, specs[p.hardware]) for p in POINTS
            if p.hardware in fam.members and p.evaluable and p.role == "calibrate"]

    def cost(x):
        fitted = {h: calibrate.with_params(s, dict(zip(fam.params, np.exp(x)))) for h, s in specs.items()}
        return sum(math.log(predict_prepared(pp, fitted[pp.point.hardware]) / pp.point.value) ** 2 for pp in prep)

    shipped = {h: catalog.load_hardware(h) for h in fam.members}
    at_shipped = cost(np.log([calibrate.current_value(shipped["b200"], n) for n in fam.params]))
    assert cost(np.log([old[n] for n in fam.params])) > at_shipped * 1.01  # the old point is not the fit
    assert cost(_fit_values(fam, specs, prep, 1)) == pytest.approx(at_shipped, rel=2e-3)


@pytest.mark.slow
def test_the_report_is_the_same_whatever_the_jobs(monkeypatch):
    """The fits are independent tasks, each deterministic given its rows and start (the scattered
    starts drawn in the parent): one process or a pool gives the same parameters and held-out
    predictions, to the last bit. The CS-3 and Groq families, pooled though small."""
    from planner.calibration import run
    fams = [f for f in calibrate.FAMILIES if f.head in ("cs3", "groq-lpu")]
    one = calibrate.fit(POINTS, fams, jobs=1)
    monkeypatch.setattr(run, "POOL_MIN_ROW_FITS", 0)
    steps = []

    class Count:
        def step(self):
            steps.append(1)

        def done(self):
            steps.append("done")
    two = calibrate.fit(POINTS, fams, jobs=2, progress=lambda n: steps.append(n) or Count())
    assert [f.params for f in one] == [f.params for f in two]
    assert [[(x.fitted, x.held_out) for x in f.predictions] for f in one] == \
        [[(x.fitted, x.held_out) for x in f.predictions] for f in two]
    assert steps[0] == 4 + 9 + 4 + 4 and steps.count(1) == steps[0] and steps[-1] == "done"  # starts + folds


@pytest.mark.slow
def test_shipped_values_are_the_fit(shipped_fits):
    """The spec files hold what the fitter finds: a refit from them moves no parameter much."""
    for f in shipped_fits:
        for name, (shipped, fitted) in f.params.items():
            assert fitted == pytest.approx(shipped, rel=0.05), (f.family.head, name)


@pytest.mark.slow
def test_bands_come_from_the_held_out_spread(shipped_fits):
    for f in shipped_fits:
        lo, hi = f.band
        spec = catalog.load_hardware(f.family.head)
        assert spec.uncertainty.speed_low == pytest.approx(lo, abs=0.01)
        assert spec.uncertainty.speed_high == pytest.approx(hi, abs=0.01)
        assert lo <= 1 <= hi


def test_bad_rows_are_reported_with_row_numbers(tmp_path):
    bad = tmp_path / "c.csv"
    base = {c: "" for c in calibrate.COLUMNS}
    base.update(date="2024", source="src source", hardware="cs3", count="1", model="llama-3.1-8b", precision="bf16",
                batch="1", role="calibrate")
    with bad.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.COLUMNS)
        w.writeheader()
        w.writerow({**base, "metric": "speed", "value": "1800"})
        w.writerow({**base, "metric": "decode_tok_s_per_user", "value": "-5"})
        w.writerow({**base, "metric": "decode_tok_s_per_user", "value": "5", "role": "maybe"})
        w.writerow({**base, "metric": "decode_tok_s_per_user", "value": "5", "routing": "power_law"})
    with pytest.raises(ConfigError) as e:
        calibrate.read_points(bad)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"{bad}:2:1: metric 'speed'") and lines[1].startswith(f"{bad}:3:1: value must be > 0")
    assert lines[2].startswith(f"{bad}:4:1: role 'maybe' not one of")
    assert lines[3].startswith(f"{bad}:5:1: routing 'power_law' not one of")


def test_write_back_keeps_comments(tmp_path, monkeypatch):
    d = tmp_path / "hardware_specs"
    shutil.copytree(catalog.hardware_dir(), d)
    monkeypatch.setattr(catalog, "hardware_dir", lambda: d)
    monkeypatch.chdir(tmp_path)
    pts = calibrate.read_points(_synthetic(tmp_path, {"layer_base": 31e-6, "io.latency": 2e-6}))
    before = (d / "groq-lpu.yaml").read_text()
    calibrate.write_back(calibrate.fit(pts, GROQ))
    after = (d / "groq-lpu.yaml").read_text()
    changed = [b for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert any(line.startswith("  layer_base: 31 us") for line in changed)
    assert any(line.startswith("  latency: 2 us") and "# fitted" in line for line in changed)
    assert all(("layer_base" in b or "latency" in b or "speed_" in b or "points" in b or "median" in b)
               for b in changed)
