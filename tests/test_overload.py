"""Throughput in overload: served work over the window of completions, a stability verdict, and
overloaded points kept out of best/pareto (issue 12, finding 1)."""
import numpy as np
import pandas as pd
import pytest

from planner import catalog
from planner.config.schema import LengthDist
from planner.physics.point import Config, build_point
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds, StepRounds
from planner.sim.workload import Sampler, Trace

TAU = 0.001


def fixed(v):
    return Sampler(LengthDist(dist="fixed", value=v))


def served_over_run(res) -> float:
    rq = res.requests
    return float(rq.output_tokens.sum() / rq.finish_s.max())


@pytest.fixture(scope="module")
def llama70b():
    cfg = Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=4, context=1280,
                 prompt=1024, output=256)
    return StepRounds(build_point(cfg))


def test_overload_throughput_is_served_work(llama70b):
    """Llama-3.1-70B on 4 x CS-3 at 1e6 req/s: the reported throughput is what was served over
    the run (within 5%), as for the same requests all arriving at t=0, and the run is flagged
    unstable. Fails on the original code: it reported 55,694 tok/s for 27,798 served (2.0x)
    and served_to_offered was not a results column."""
    n = 2000
    over = simulate(SimSpec(requests=n, rate_per_s=1e6, prompt=fixed(1024), output=fixed(256)), llama70b)
    burst = simulate(SimSpec(requests=n, process="trace",
                             trace=Trace(np.zeros(n), np.full(n, 1024), np.full(n, 256))), llama70b)
    for res in (over, burst):
        s = res.summary
        assert s.throughput_out_tok_s == pytest.approx(served_over_run(res), rel=0.05)
        assert not s.stable and s.served_to_offered < 0.01
        assert "served_to_offered" in s.columns() and "stable" in s.columns()
    assert over.summary.throughput_out_tok_s == pytest.approx(burst.summary.throughput_out_tok_s, rel=0.02)


@pytest.mark.parametrize("lam", [7.0, 20.0])
def test_md1_throughput_below_and_above_saturation(lam):
    """M/D/1 (one server, 100 tokens at 1 ms per round: mu = 10 req/s): throughput is lambda x
    100 tokens below saturation and mu x 100 above it, served_to_offered mu / lambda there.
    Fails on the original code at lambda = 20: it reported ~1,330 tok/s for 1,000 served."""
    mu = 1 / (100 * TAU)
    thr, s2o = [], []
    for seed in range(4):
        s = simulate(SimSpec(requests=3000, rate_per_s=lam, prompt=fixed(1), output=fixed(100), max_batch=1,
                             seed=seed), ConstantRounds(TAU)).summary
        thr.append(s.throughput_out_tok_s)
        s2o.append(s.served_to_offered)
        assert s.stable == (lam < mu)
    # Poisson count noise over ~2,700 measured requests: 1/sqrt(2700) ~ 2%; 3 sigma on the mean of 4
    assert np.mean(thr) == pytest.approx(min(lam, mu) * 100, rel=0.03)
    assert np.mean(s2o) == pytest.approx(min(1.0, mu / lam), rel=0.03)


def test_overloaded_point_is_never_best_or_pareto(write):
    """No SLO: the overloaded load (5 x the analytic capacity) serves more tokens per dollar on
    paper, but it is unstable, so it fails the verdict and is neither best nor on the front.
    Fails on the original code: the overloaded point was chosen as best."""
    from planner import sweep
    p = write("o.yaml", """
        name: overload
        model: llama-3.1-8b
        deployment: {hardware: cs3, count: 1}
        workload:
          context_tokens: 2048
          output_tokens: 128
          arrival: {process: poisson, load: 0.3}
          requests: 400
        sweep:
          - name: load
            axes:
              workload.arrival.load: [0.1, 5.0]
        """)
    df = sweep(p, jobs=1)
    hi = df[df["workload.arrival.load"] == 5.0].iloc[0]
    lo = df[df["workload.arrival.load"] == 0.1].iloc[0]
    assert hi["stable"] == False and lo["stable"] == True  # noqa: E712
    assert hi["served_to_offered"] < 0.5 and not hi["slo_pass"] and "unstable" in hi["reason"]
    assert not hi["pareto"] and lo["pareto"]
    from planner.sweeps.tables import best
    assert list(best(df)["point"]) == [int(lo["point"])]
    assert isinstance(df, pd.DataFrame)


def test_one_token_replies_pass_a_speed_slo(write):
    """Replies of one token have no per-token speed: the speed and TPOT targets cannot be missed,
    attainment is 100% and the verdict passes. Fails on the original code: the p50 speed of no
    multi-token reply was NaN, which the verdict counted as a miss (slo_pass false at 100%)."""
    from planner.plan.point import run_point
    from planner.plan.scenario import load
    p = write("one.yaml", """
        name: one
        model: llama-3.1-8b
        deployment: {hardware: cs3, count: 1}
        workload:
          prompt_tokens: 512
          output_tokens: 1
          arrival: {process: poisson, rate_per_s: 5}
          requests: 200
        slo: {decode_tok_s_per_user_p50: 100, tpot_p99_s: 0.05}
        """)
    loaded = load(p)
    result, res = run_point(loaded, loaded.points[0], simulate=True)
    assert res.summary.slo_attainment == 1.0
    assert result.slo_pass and result.feasible
