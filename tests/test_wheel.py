"""The built wheel works outside the checkout: catalog, validation, a sweep with its plots.

Why: everything else in the suite imports the package from the source tree, where the
catalog, the hardware specs and the models sit next to the code whether or not they are
packaged. Here the wheel is built from a copy of the sources, installed (without touching
the network) into a fresh virtualenv in a temporary folder, and `plan` is run from another
temporary folder with no PYTHONPATH, so only what the wheel carries can be found.
The build uses pip's isolated build environment (setuptools, wheel and Cython from the package
index, as any `pip install .` would), so with a C compiler the wheel carries the compiled
simulator (setup.py) and the last test checks it computes what the source tree computes. The new environment borrows the test interpreter's installed dependencies through a .pth
file (a line per site-packages folder; .pth files inside them are not processed, so an
editable install of the checkout stays invisible); the wheel's own copy comes first on
sys.path, and the test checks that it is the one imported.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from planner.sweeps.runner import run
from tests.conftest import REPO



def test_every_package_folder_is_in_the_wheel():
    """Pins (fast, no build): pyproject lists every planner package, so none is left out of the
    wheel (a package the list misses imports fine from the checkout and fails installed)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "planner").rglob("__init__.py")}
    assert found - listed == set()


def _sh(cmd, cwd, env=None, timeout=600):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh virtualenv with the wheel installed, an environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "outputs")
    for part in ("planner", "hardware_specs"):
        shutil.copytree(REPO / part, src / part, ignore=ignore)
    for f in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / f, src / f)
    dist = tmp / "dist"
    _sh([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", dist], cwd=src)
    wheel = next(dist.glob("wafer_planner-*.whl"))
    venv = tmp / "v"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    py = venv / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    site = Path(_sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    deps |= {p for p in sys.path if p.endswith("site-packages")}
    (site / "borrowed_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    where = _sh([py, "-c", "import planner; print(planner.__file__)"], cwd=tmp, env=env).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout
    return venv / "bin", env


@pytest.mark.slow
def test_list_show_validate_and_a_tiny_sweep_from_the_wheel(installed, tmp_path):
    """Pins: the installed `plan` finds its catalog and models, validates a shipped scenario copied
    out of the checkout, and runs a small analytic sweep to results, answer and plots."""
    bin_, env = installed
    plan = bin_ / "plan"
    r = _sh([plan, "list", "hardware"], cwd=tmp_path, env=env)
    assert "cs3" in r.stdout and "gb200-nvl72" in r.stdout and "hypothetical" in r.stdout
    assert "deepseek-r1" in _sh([plan, "list", "models"], cwd=tmp_path, env=env).stdout
    shown = _sh([plan, "show", "hardware", "cs3"], cwd=tmp_path, env=env).stdout
    assert "_hardware_specs" in shown.splitlines()[0] and str(REPO) not in shown
    scen = tmp_path / "llama-70b.yaml"
    shutil.copy(REPO / "scenarios" / "llama-70b.yaml", scen)
    assert "ok (18 points)" in _sh([plan, "validate", scen], cwd=tmp_path, env=env).stdout
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(scen.read_text().split("sweep:")[0] + (
        "sweep:\n  - name: gpus\n    axes:\n      deployment.hardware: [cs3, h100]\n      deployment.count: [4, 8]\n"),
        encoding="utf-8")
    r = _sh([plan, "sweep", tiny, "--analytic-only", "-j", "1", "-o", tmp_path / "out"], cwd=tmp_path, env=env)
    assert "cheapest configuration per hardware meeting the SLO" in r.stdout
    out = tmp_path / "out"
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["feasible"].any() and list(df.columns[:3]) == ["point", "model", "hardware"]
    assert (out / "cost_vs_speed.png").stat().st_size > 10_000 and (out / "summary.md").exists()
    meta = json.loads((out / "run.json").read_text())
    # built from a copy with no .git: no commit to name (a build in a checkout records its own)
    assert meta["git_commit"] is None and meta["commit_source"] is None and meta["packages"]["wafer-planner"]
    r = _sh([plan, "size", "--model", "deepseek-ai/DeepSeek-R1", "--users", "100", "--tok-s-per-user", "50",
             "--hardware", "cs3", "--analytic-only", "-o", tmp_path / "size", "-q"], cwd=tmp_path, env=env)
    assert "rank  hardware" in r.stdout and (tmp_path / "size" / "answer.csv").exists()


def test_setup_compiles_modules_that_exist():
    """Pins (fast, no build): every module setup.py compiles is a module of the package (a renamed
    one would be left out silently), and annotations are not read as C types (they would change
    the arithmetic: a ``float`` argument becomes a C double, an ``int`` result a float)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    consts = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("COMPILED", "DIRECTIVES")}
    assert consts["COMPILED"] and all((REPO / p).is_file() for p in consts["COMPILED"])
    assert consts["DIRECTIVES"]["annotation_typing"] is False


@pytest.mark.slow
def test_the_wheel_simulates_as_the_source_does(installed, tmp_path):
    """Oracle: the installed package (compiled when this machine has a C compiler) and the source
    tree give the same results.csv, byte for byte, on a simulated sweep; `plan --version` says
    which simulator runs."""
    bin_, env = installed
    version = _sh([bin_ / "plan", "--version"], cwd=tmp_path, env=env).stdout
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) and (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():  # can compile
        assert "compiled (Cython)" in version, version
    scen = tmp_path / "tiny.yaml"
    scen.write_text((REPO / "scenarios" / "llama-70b.yaml").read_text().split("sweep:")[0] + (
        "sweep:\n  - name: two\n    axes:\n      deployment.hardware: [cs3, h100]\n      deployment.count: [4]\n"),
        encoding="utf-8")
    _sh([bin_ / "plan", "sweep", scen, "-j", "1", "-o", tmp_path / "wheel", "-q"], cwd=tmp_path, env=env)
    run(str(scen), tmp_path / "source", quiet=True, jobs=1)
    wheel, source = (tmp_path / d / "results.csv" for d in ("wheel", "source"))
    assert pd.read_csv(wheel)["capacity_probes"].gt(0).any()  # the simulator ran
    assert wheel.read_bytes() == source.read_bytes()


def test_pxd_declarations_name_attributes_the_code_sets():
    """Pins (fast): every attribute a .pxd declares is still assigned (``self.NAME``) in its .py, so a
    rename in the Python leaves no stale declaration behind (the new name would still work, through
    the instance dict, but unseen and slower)."""
    pxds = sorted((REPO / "planner").rglob("*.pxd"))
    assert pxds
    for pxd in pxds:
        code = pxd.with_suffix(".py").read_text()
        for line in pxd.read_text().splitlines():
            if line.strip().startswith("cdef public object"):
                for name in line.split("object", 1)[1].split(","):
                    assert re.search(rf"\bself\.{name.strip()}\b", code), (pxd.name, name.strip())


def test_an_install_names_the_commit_it_was_built_from(tmp_path, monkeypatch):
    """Pins: outside a checkout, run.json's commit is the one setup.py recorded at build time
    (planner/_build.json), marked as such; unreadable or absent, it is null."""
    from planner.sweeps import provenance as pv
    monkeypatch.setattr(pv, "git_commit", lambda: (None, None))
    monkeypatch.setattr(pv, "BUILD_INFO", tmp_path / "_build.json")
    assert (pv.provenance()["git_commit"], pv.provenance()["commit_source"]) == (None, None)
    (tmp_path / "_build.json").write_text(json.dumps({"git_commit": "ab" * 20, "git_dirty": False}))
    meta = pv.provenance()
    assert (meta["git_commit"], meta["git_dirty"], meta["commit_source"]) == ("ab" * 20, False, "install")
    (tmp_path / "_build.json").write_text("[not json")
    assert pv.provenance()["git_commit"] is None


def test_a_build_leaves_no_old_binary_to_shadow_the_source(tmp_path, monkeypatch):
    """Pins (fast, no build): setup.py's clean-up deletes a compiled module an earlier build left in
    build/ (pip reuses it), keeping the sources; a plain-Python build, or a module that failed to
    compile, would otherwise ship the old binary, which Python imports before the edited .py."""
    import runpy
    import setuptools
    monkeypatch.setattr(setuptools, "setup", lambda **kw: None)
    monkeypatch.chdir(REPO)
    drop = runpy.run_path(str(REPO / "setup.py"), run_name="setup")["_drop_compiled"]
    sim = tmp_path / "planner" / "sim"
    sim.mkdir(parents=True)
    names = ["replica.py", "replica.pxd", "replica.cpython-311-x86_64-linux-gnu.so", "replica.pyd",
             "rounds.cpython-311-x86_64-linux-gnu.so"]
    for n in names:
        (sim / n).write_text("x")
    drop(str(tmp_path), ["planner/sim/replica.py"])
    assert sorted(p.name for p in sim.iterdir()) == ["replica.pxd", "replica.py",
                                                    "rounds.cpython-311-x86_64-linux-gnu.so"]
