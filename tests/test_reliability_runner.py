"""The sweep runner under abuse (issue 12, findings 2, 3, 4 and the runner parts of 10): a corrupt
or foreign stored point, an output folder that cannot be written, SIGTERM, two sweeps into one
folder, huge sweeps, a set of tables cut in half, malformed report and calibration inputs.
Each test failed on the code before the fix (its docstring says how)."""
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from planner.sweeps import runner

from tests.conftest import REPO, SIM

PLAN = [sys.executable, "-m", "planner.cli"]
TABLES = ("results.csv", "pareto.csv", "best.csv")

# two quick points, then long ones (200,000 requests each: many seconds), so a sweep is caught
# with points stored and workers busy
LONG = SIM.replace("REQUESTS", "300").split("sweep:")[0] + """
sweep:
  - name: quick
    axes:
      workload.arrival.load: [0.3, 0.5]
  - name: long
    axes:
      workload.requests: [200000]
      workload.arrival.load: [0.3, 0.5, 0.7, 0.9]
"""


def tables(folder: Path) -> dict:
    return {n: (folder / n).read_bytes() for n in TABLES}


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ finding 2: the store
@pytest.fixture(scope="module")
def analytic(tmp_path_factory):
    """The small sweep, analytic (fast), and a clean run's tables to compare against."""
    d = tmp_path_factory.mktemp("store")
    scen = d / "small.yaml"
    scen.write_text(textwrap.dedent(SIM.replace("REQUESTS", "600")).lstrip(), encoding="utf-8")
    runner.run(scen, d / "clean", quiet=True, jobs=1, simulate=False)
    return scen, tables(d / "clean"), d


def _stored(out: Path) -> list[Path]:
    return sorted((out / ".points").glob("*.json"))


@pytest.mark.parametrize("bad", ["{}", "null", "[]", '"x"', "NaN", "other point"])
def test_corrupt_stored_point_is_recomputed_with_a_warning(analytic, tmp_path, capfd, bad):
    """Before: ``{}`` became a blank row (pareto and best changed), another point's file was reused
    as is, and null / [] / "x" / NaN made every re-run crash with a traceback until --fresh."""
    scen, clean, _ = analytic
    out = tmp_path / "o"
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    files = _stored(out)
    victim = files[3]
    victim.write_text(files[5].read_text() if bad == "other point" else bad, encoding="utf-8")
    capfd.readouterr()
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    err = stderr_lines(capfd.readouterr().err)
    assert len(err) == 1 and err[0].startswith("warning: stored point ") and victim.name in err[0], err
    assert "evaluating it again" in err[0] and "Traceback" not in err[0]
    run = json.loads((out / "run.json").read_text())
    assert run["stored_invalid"] == 1 and run["evaluated"] == 1 and run["reused"] == 10
    assert tables(out) == clean
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)  # the file was rewritten: clean now
    assert json.loads((out / "run.json").read_text())["stored_invalid"] == 0 and not capfd.readouterr().err


def test_stored_row_of_a_wrong_type_is_not_trusted(analytic, tmp_path, capfd):
    """Before: a stored row was taken as it was; a string where a bool belongs (slo_pass: "yes")
    reached the tables."""
    scen, clean, _ = analytic
    out = tmp_path / "o"
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    f = _stored(out)[0]
    rec = json.loads(f.read_text())
    row = rec.get("row", rec)  # the old store kept the row itself
    row["slo_pass"] = "yes"
    f.write_text(json.dumps(rec))
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    assert "column slo_pass is a str" in capfd.readouterr().err
    assert tables(out) == clean


def test_resume_is_identical_when_two_groups_share_a_configuration(write, tmp_path):
    """Before: a stored row carried the axis columns of the point that stored it, so on resume a
    configuration reached from two groups showed the other group's axis value (results.csv
    differed from an uninterrupted run's)."""
    scen = write("dup.yaml", SIM.replace("REQUESTS", "300").split("sweep:")[0] + """
sweep:
  - name: a
    axes:
      deployment.count: [1, 2]
  - name: b
    axes:
      deployment.kv_policy: [wait]
""")
    runner.run(scen, tmp_path / "x", quiet=True, jobs=1, simulate=False)
    runner.run(scen, tmp_path / "x", quiet=True, jobs=1, simulate=False)  # everything reused
    runner.run(scen, tmp_path / "y", quiet=True, jobs=1, simulate=False)
    assert json.loads((tmp_path / "x" / "run.json").read_text())["reused"] == 3
    assert tables(tmp_path / "x") == tables(tmp_path / "y")


# ------------------------------------------------------------------ finding 3: unwritable output
def _unwritable_dirs(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    dirs = [Path("/proc/1/planner-out")]  # not writable, even by root
    if not os.access(ro, os.W_OK):  # root writes anyway: then only /proc tells
        dirs.append(ro / "out")
    return dirs


def test_unwritable_output_folder_exits_1_with_one_line(analytic, tmp_path):
    """Before: a raw traceback (FileNotFoundError / PermissionError), exit 1 by accident."""
    scen = analytic[0]
    for out in _unwritable_dirs(tmp_path):
        r = subprocess.run(PLAN + ["sweep", str(scen), "--analytic-only", "-q", "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
        lines = stderr_lines(r.stderr)
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith("error: cannot write ") and str(out) in lines[0] and "Traceback" not in r.stderr
        assert not r.stdout


@pytest.mark.slow
def test_a_failed_write_stops_the_workers_at_once(write, tmp_path, monkeypatch):
    """Before: the write error waited for the points in progress (many seconds here) before it
    reached the caller; now the pool is ended as soon as the write fails."""
    psutil = pytest.importorskip("psutil")
    scen = write("long.yaml", LONG)
    failed_at = []

    def full_disk(self, pt, row):
        failed_at.append(time.time())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner.Store, "put", full_disk)
    with pytest.raises(OSError, match="No space left"):
        runner.run(scen, tmp_path / "o", quiet=True, jobs=2)
    assert failed_at and time.time() - failed_at[0] < 5
    workers = [p for p in psutil.Process().children(recursive=True)
               if _alive(p) and "resource_tracker" not in " ".join(p.cmdline())]  # the tracker lives with us
    assert not workers
    assert not (tmp_path / "o" / "results.csv").exists()


def test_unreachable_dask_scheduler_is_one_line(analytic, monkeypatch, capsys):
    """Before: a traceback after 30 s; now one line after the connect timeout (10 s; 1 s here)."""
    pytest.importorskip("distributed")
    from click.testing import CliRunner
    from planner.cli import main
    monkeypatch.setattr(runner, "DASK_CONNECT_TIMEOUT", 1, raising=False)
    t0 = time.time()
    r = CliRunner().invoke(main, ["sweep", str(analytic[0]), "--analytic-only", "-q", "-o",
                                  str(analytic[2] / "dask"), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 1 and time.time() - t0 < 20, r.output
    assert "error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["sweep", str(analytic[0]), "--analytic-only", "-q", "-o",
                                  str(analytic[2] / "dask"), "--executor", "dask", "--scheduler", "foo://bar"])
    assert r.exit_code == 2 and "--scheduler: unknown address scheme 'foo'" in r.output, r.output


# ------------------------------------------------------------------ finding 4: SIGTERM
def _alive(p) -> bool:
    import psutil
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_sigterm_ends_the_workers_and_keeps_stored_points(write, tmp_path):
    """Before: SIGTERM killed the main process on the spot and left both pool workers and the
    resource tracker running (for the rest of the long points here)."""
    psutil = pytest.importorskip("psutil")
    scen = write("long.yaml", LONG)
    out = tmp_path / "o"
    proc = subprocess.Popen(PLAN + ["sweep", str(scen), "-j", "2", "-q", "-o", str(out)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(list((out / ".points").glob("*.json"))) < 2:
            time.sleep(0.05)
        stored = len(list((out / ".points").glob("*.json")))
        assert stored >= 2, "no points stored in time"
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert len(kids) >= 2  # the workers (and the resource tracker)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "interrupted" in err
        gone = time.time() + 5
        while time.time() < gone and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k.pid for k in kids if _alive(k)], "processes left behind"
        assert len(list((out / ".points").glob("*.json"))) >= stored and not (out / "results.csv").exists()
        assert not (out / ".lock").exists()
    finally:
        for k in kids:  # the old code leaves them: do not let them run on
            if _alive(k):
                k.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ finding 10: lock, size, sets
def test_a_second_sweep_into_a_locked_folder_is_refused(analytic, tmp_path):
    """Before: no lock, so both sweeps computed every point."""
    scen = analytic[0]
    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        r = subprocess.run(PLAN + ["sweep", str(scen), "--analytic-only", "-q", "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert stderr_lines(r.stderr) == [f"error: another sweep is writing to {out} (pid {os.getpid()})"]
    assert not (out / ".points").exists() or not list((out / ".points").iterdir())
    r = subprocess.run(PLAN + ["sweep", str(scen), "--analytic-only", "-q", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not (out / ".lock").exists()


def _groups(n: int) -> str:
    head = SIM.replace("REQUESTS", "300").split("sweep:")[0]
    return head + "sweep:\n" + "".join(
        f"  - name: g{i}\n    axes:\n      workload.arrival.load: [{0.1 + (i % 80) / 100:.2f}]\n" for i in range(n))


@pytest.mark.slow
def test_loading_5000_groups_is_linear(write):
    """Before: 42 s on this machine (quadratic: every point copied the file's position map and
    searched the groups); now ~10 s, mostly parsing the YAML."""
    from planner.plan.scenario import load
    scen = write("big.yaml", _groups(5000))
    t0 = time.time()
    assert len(load(scen).points) == 5000
    assert time.time() - t0 < 25


def test_max_points_refuses_before_expanding(write):
    """Before: the 10^12 combinations were expanded (and validated) before --max-points was
    looked at: the command never came back."""
    vals = lambda lo: "[" + ", ".join(str(lo + i) for i in range(100)) + "]"  # noqa: E731
    scen = write("huge.yaml", SIM.replace("REQUESTS", "300").split("sweep:")[0] + f"""
sweep:
  - name: huge
    axes:
      seed: {vals(0)}
      workload.requests: {vals(100)}
      deployment.count: {vals(1)}
      workload.output_tokens: {vals(1)}
      workload.prompt_tokens: {vals(1)}
      workload.context_tokens: {vals(4096)}
""")
    r = subprocess.run(PLAN + ["sweep", str(scen), "--max-points", "100"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "1000000000000 points > --max-points 100: pass --yes" in r.stderr, r.stderr


def test_tables_are_replaced_as_a_set(analytic, tmp_path, monkeypatch):
    """Before: results.csv was renamed into place before pareto.csv was written, so a failure
    writing pareto.csv left a new results.csv beside the old pareto and best tables."""
    scen, _, _ = analytic
    out = tmp_path / "o"
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    before = {**tables(out), "run.json": (out / "run.json").read_bytes()}
    other = tmp_path / "other.yaml"  # same sweep, other prices: every table changes
    other.write_text(scen.read_text() + "economics: {usd_per_kwh: 0.5}\n", encoding="utf-8")
    real = tempfile.mkstemp

    def full_disk(*a, **kw):
        if str(kw.get("prefix", "")).startswith(".pareto.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    with pytest.raises(OSError):
        runner.run(other, out, quiet=True, jobs=1, simulate=False)
    assert {**tables(out), "run.json": (out / "run.json").read_bytes()} == before
    assert not [f for f in os.listdir(out) if f.startswith(".") and f not in (".points",)]


def test_report_refuses_a_mixed_or_malformed_folder_in_one_line(analytic, tmp_path):
    """Before: a truncated or foreign results.csv, or a run.json that is not JSON, gave a pandas
    or json traceback; a set mixed by a crash went unnoticed."""
    pytest.importorskip("matplotlib")
    scen = analytic[0]
    out = tmp_path / "o"
    runner.run(scen, out, quiet=True, jobs=1, simulate=False)
    cases = {
        "run.json": ["{not json", "[1, 2]"],
        "results.csv": ["", "a,b\n1,2\n", "\x00\x01\x02", "point,group\n1,2,3,4\n"],
    }
    keep = {n: (out / n).read_bytes() for n in ("run.json", "results.csv")}
    for name, texts in cases.items():
        for text in texts:
            (out / name).write_text(text, encoding="utf-8")
            if name == "results.csv":  # past the set check: run.json without the digests
                run = json.loads(keep["run.json"])
                run.pop("tables")
                (out / "run.json").write_text(json.dumps(run))
            r = subprocess.run(PLAN + ["report", str(out)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and len(stderr_lines(r.stderr)) == 1, (name, text, r.stderr)
            assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
            for n, b in keep.items():
                (out / n).write_bytes(b)
    (out / "pareto.csv").write_text((out / "pareto.csv").read_text() + "\n")  # not the set run.json lists
    r = subprocess.run(PLAN + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pareto.csv is not the table run.json lists" in r.stderr


def test_calibrate_data_malformed_is_one_located_line(tmp_path):
    """Before: a file that is not UTF-8, an unknown precision, an infinite value or a row whose
    hardware has no such software profile gave a traceback."""
    head = (REPO / "hardware_specs" / "calibration.csv").read_text(encoding="utf-8").splitlines()[0]
    row = ("2024-08-27,src,cs3,1,llama-3.1-8b,bf16,,decode_tok_s_per_user,1800,1,2048,1024,1024,launch-2024-08,"
           ",,,,,calibrate,n")
    cases = {"binary": b"\xff\xfe\x00bad", "precision": row.replace(",bf16,", ",fp3,"),
             "inf": row.replace(",1800,", ",inf,"), "profile": row.replace("launch-2024-08", "nosuch"),
             "short": "2024,x,cs3", "count": row.replace(",1,llama", ",0,llama")}
    for name, body in cases.items():
        f = tmp_path / f"{name}.csv"
        f.write_bytes(body if isinstance(body, bytes) else f"{head}\n{body}\n".encode())
        r = subprocess.run(PLAN + ["calibrate", "--data", str(f), "--no-cv"], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        lines = stderr_lines(r.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"{f}:"), (name, lines)


def test_calibrate_write_changes_no_file_when_one_cannot_be_rewritten(tmp_path, monkeypatch):
    """Before: files were rewritten one by one in place, so a family whose value could not be
    rewritten left the families before it already changed (and a crash mid-write, a cut file)."""
    from planner import catalog
    from planner.calibration import write as cw
    from planner.calibration.data import FAMILIES
    from planner.calibration.fit import FamilyFit
    from planner.config.errors import ConfigError
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("compute:\n  efficiency: 0.5  # fitted\n", encoding="utf-8")
    b.write_text("compute:\n  other: 1\n", encoding="utf-8")  # efficiency not set: cannot be rewritten
    paths = {FAMILIES[0].head: a, FAMILIES[1].head: b}
    monkeypatch.setattr(catalog, "find", lambda kind, name, *rest: paths[name])
    fits = [FamilyFit(FAMILIES[i], {"compute.efficiency": (0.5, 0.75)}, cv="none") for i in (0, 1)]
    with pytest.raises(ConfigError, match="not set in this file"):
        cw.write_back(fits)
    assert a.read_text() == "compute:\n  efficiency: 0.5  # fitted\n"
    assert cw.write_back(fits[:1]) == [str(a)] and a.read_text() == "compute:\n  efficiency: 0.75  # fitted\n"
    assert sorted(os.listdir(tmp_path)) == ["a.yaml", "b.yaml"]
