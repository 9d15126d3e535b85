"""Running sweeps: resume after kill -9, retry, Dask = local, tables, workbook, report, guard, API."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

import planner
from planner.sweeps import runner
from planner.config.errors import ConfigError
from planner.plan.scenario import load
from planner.sweeps.tables import best, pareto_mask

from tests.conftest import SIM



def files(folder):
    return {n: (folder / n).read_bytes() for n in ("results.csv", "pareto.csv", "best.csv")}


@pytest.fixture
def small(write):
    return write("small.yaml", SIM.replace("REQUESTS", "600"))


def test_skip_drops_combinations(small):
    pts = load(small).points
    assert len(pts) == 8 + 3
    assert {"deployment.hardware": "b200", "deployment.count": 2} not in [p.values for p in pts]


@pytest.mark.slow
def test_resumes_after_kill_9_with_identical_results(write, tmp_path):
    """Kill the sweep process group mid-run, re-run the same command: same files as a clean run."""
    scen = write("slow.yaml", SIM.replace("REQUESTS", "2500"))
    cmd = [sys.executable, "-m", "planner.cli", "sweep", str(scen), "-j", "1", "-q"]
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd + ["-o", str(cut)], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((cut / ".points").glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = len(list((cut / ".points").glob("*.json")))
    assert 3 <= stored < 11, "the sweep finished before it could be killed"
    assert not (cut / "results.csv").exists()  # no table from a partial run
    subprocess.run(cmd + ["-o", str(cut)], check=True)
    assert json.loads((cut / "run.json").read_text())["reused"] >= stored
    whole = tmp_path / "whole"
    subprocess.run(cmd + ["-o", str(whole)], check=True)
    assert files(cut) == files(whole)
    assert not [f for f in os.listdir(cut) if f.startswith(".") and f != ".points"]  # no temp files left


def test_failed_point_is_retried_once_then_reported(small, tmp_path, monkeypatch):
    calls = {}
    real = runner.evaluate

    def flaky(loaded, pt, simulate=None):
        calls[pt.index] = calls.get(pt.index, 0) + 1
        if pt.index == 1 and calls[pt.index] == 1:
            return runner.failed(pt, MemoryError("transient"))
        if pt.index == 2:
            return runner.failed(pt, RuntimeError("always broken"))
        return real(loaded, pt, simulate)

    monkeypatch.setattr(runner, "evaluate", flaky)
    df, out = runner.run(small, tmp_path / "o", quiet=True, jobs=1)
    assert calls[1] == 2 and calls[2] == 2 and calls[0] == 1
    assert df.loc[1, "feasible"] and df.loc[2, "bottleneck"] == "error"
    assert df.loc[2, "reason"] == "error: RuntimeError: always broken"
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == 1 and run["done"] == 10 and run["failed_points"][0]["point"] == 2
    assert len(list((out / ".points").glob("*.json"))) == 10  # the failure is not stored: a re-run retries it
    monkeypatch.setattr(runner, "evaluate", real)
    df, out = runner.run(small, tmp_path / "o", quiet=True, jobs=1)
    assert json.loads((out / "run.json").read_text())["evaluated"] == 1 and (df["bottleneck"] != "error").all()


@pytest.mark.slow
def test_local_pool_and_dask_cluster_give_the_same_files(small, tmp_path):
    distributed = pytest.importorskip("distributed")
    runner.run(small, tmp_path / "one", quiet=True, jobs=1)
    runner.run(small, tmp_path / "two", quiet=True, jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        runner.run(small, tmp_path / "dask", quiet=True, executor="dask", scheduler=cluster.scheduler_address)
    assert files(tmp_path / "one") == files(tmp_path / "two") == files(tmp_path / "dask")
    assert json.loads((tmp_path / "dask" / "run.json").read_text())["executor"] == "dask"


def test_pareto_and_best_by_hand():
    df = pd.DataFrame({
        "point": range(6), "model": "m", "hardware": ["a", "a", "a", "b", "b", "b"],
        "slo_pass": [True, True, True, True, False, True], "devices": [4, 8, 2, 16, 1, 16],
        "cost_usd_per_mtok_out": [1.0, 2.0, 1.0, 0.5, 0.1, 0.5],
        "decode_tok_s_per_user_p50": [100.0, 300.0, 50.0, 100.0, 900.0, 100.0],
        "throughput_out_tok_s": [1e4, 1e4, 1e4, 1e4, 1e6, 1e4]})
    # 0 is beaten by 3 (cheaper, as fast, as much); 2 by 0; 4 misses the SLO; 3 and 5 tie: both stay
    assert list(pareto_mask(df)) == [False, True, False, True, False, True]
    assert list(best(df)["point"]) == [3, 2]  # per hardware, cheapest first; a: 0 and 2 tie, 2 has fewer devices
    # per context too, and a hypothetical option (a bonded layer on a real wafer) never hides the real one
    df = pd.DataFrame({
        "point": range(5), "model": "m", "hardware": "w", "context_tokens": [8192, 8192, 32768, 32768, 8192],
        "hypothetical": [False, True, False, False, False], "slo_pass": True, "devices": 4,
        "cost_usd_per_mtok_out": [2.0, 1.0, 3.0, 4.0, 2.5]})
    assert list(best(df)["point"]) == [0, 1, 2]  # 8K real, 8K hypothetical, 32K real


def test_workbook_report_and_permissions(small, tmp_path):
    pytest.importorskip("xlsxwriter")
    pytest.importorskip("matplotlib")
    old = os.umask(0o022)
    try:
        _, out = runner.run(small, tmp_path / "o", quiet=True, jobs=1, xlsx=True)
        from planner.sweeps.report import write_report
        written = write_report(out)
    finally:
        os.umask(old)
    with zipfile.ZipFile(out / "results.xlsx") as z:
        wb = z.read("xl/workbook.xml").decode()
    assert all(f'name="{s}"' in wb for s in ("results", "pareto", "best"))
    assert {p.name for p in written} == {"cost_vs_speed.png", "throughput_vs_latency.png",
                                         "devices_vs_context.png", "frontier.png", "summary.md"}
    md = (out / "summary.md").read_text()
    cheapest = pd.read_csv(out / "best.csv").sort_values("cost_usd_per_mtok_out").iloc[0]
    assert f"x {cheapest['hardware']}" in md and "## Plots" in md
    for f in ("results.csv", "run.json", "results.xlsx", "cost_vs_speed.png"):
        assert stat.S_IMODE((out / f).stat().st_mode) == 0o644


def test_point_guard_and_report_errors(small, tmp_path):
    cmd = [sys.executable, "-m", "planner.cli"]
    r = subprocess.run(cmd + ["sweep", str(small), "--max-points", "5", "-o", str(tmp_path / "g")],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "11 points > --max-points 5: pass --yes" in r.stderr
    assert not (tmp_path / "g").exists()
    r = subprocess.run(cmd + ["report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "results.csv not found" in r.stderr


@pytest.mark.slow
def test_python_api_matches_the_csv(small, tmp_path):
    df = planner.sweep(small, jobs=1)
    runner.run(small, tmp_path / "o", quiet=True, jobs=1)
    csv = pd.read_csv(tmp_path / "o" / "results.csv")
    assert list(df.columns) == list(csv.columns) and len(df) == len(csv)
    assert np.allclose(df["throughput_out_tok_s"].astype(float), csv["throughput_out_tok_s"], rtol=1e-5,
                       equal_nan=True)
    import yaml
    mapping = yaml.safe_load(small.read_text())
    mapping["sweep"] = mapping["sweep"][:1]
    assert len(planner.sweep(mapping, jobs=1)) == 8
    mapping["sweep"][0]["skip"] = [{"deployment.kv_policy": "swapp"}]
    with pytest.raises(ConfigError, match="matches none of the axis's values"):
        planner.sweep(mapping, jobs=1)


def test_stored_points_are_not_reused_after_a_spec_file_changes(write, tmp_path):
    (tmp_path / "hardware_specs").mkdir()
    spec = write("hardware_specs/mywafer.yaml", "name: mywafer\nextends: cs3\npower: {watts: 23 kW, source: test}\n")
    scen = write("s.yaml", SIM.replace("REQUESTS", "300").replace("hardware: cs3", "hardware: mywafer")
                 .split("sweep:")[0])
    out = tmp_path / "o"
    a, _ = runner.run(scen, out, quiet=True, jobs=1)
    runner.run(scen, out, quiet=True, jobs=1)
    assert json.loads((out / "run.json").read_text())["reused"] == 1  # same specs: reused
    spec.write_text(spec.read_text().replace("23 kW", "46 kW"))
    b, _ = runner.run(scen, out, quiet=True, jobs=1)
    assert json.loads((out / "run.json").read_text())["reused"] == 0  # edited spec: evaluated again
    assert b.loc[0, "power_kw"] == 2 * a.loc[0, "power_kw"]
