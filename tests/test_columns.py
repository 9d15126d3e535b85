"""results.csv as a person reads it: answer columns first, every column documented once (in
code, columns.md, the workbook and the README), no duplicate columns, plain decimals that read
back as the same floats."""
import dataclasses
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

import planner
from planner.sim.records import Summary
from planner.sim.sessions import TaskStats
from planner.sweeps import columns, runner
from planner.sweeps.export import plain

from tests.conftest import REPO, SIM

SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))
ANSWER = ["point", "model", "hardware", "weights_precision", "kv_precision", "context_tokens", "devices",
          "replicas"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_column_a_shipped_scenario_produces_is_documented(path):
    """Pins: a new result column cannot ship without a (unit, meaning) entry in columns.COLUMNS,
    and the answer columns lead."""
    df = planner.sweep(path, jobs=1, simulate=False)
    undocumented = [c for c in df.columns if not columns.documented(c)]
    assert not undocumented
    assert list(df.columns[:len(ANSWER)]) == ANSWER
    assert df.columns.is_unique
    assert df["hypothetical"].notna().all()  # every row says whether its hardware exists


def test_simulated_and_task_figures_are_documented():
    """Pins: every figure the simulator puts in a row (and every agent-task figure) has an entry."""
    names = [f.name for f in dataclasses.fields(Summary) if f.metadata.get("row", True) and f.name != "tasks"]
    names += [f.name for f in dataclasses.fields(TaskStats)]
    assert [n for n in names if n not in columns.MEANINGS] == []
    assert len({n for n, _, _ in columns.COLUMNS}) == len(columns.COLUMNS)  # each column once


def test_swept_values_shown_by_a_result_column_are_not_repeated(tmp_path):
    """Pins the four duplicates of the main job (hardware, weights and KV precision, context as
    both axis and result columns): the axis column goes, the resolved result column stays."""
    df = planner.sweep(REPO / "scenarios" / "deepseek.yaml", jobs=1, simulate=False)
    assert not set(columns.AXIS_SHOWN_AS) & set(df.columns)
    assert {"deployment.count", "hardware.bonded_sram.layers"} <= set(df.columns)
    assert set(df["context_tokens"]) == {8192, 32768, 131072}
    feasible = df[df["feasible"]]
    per_device = feasible["throughput_out_tok_s"] / feasible["devices"]
    assert np.allclose(feasible["throughput_out_tok_s_per_device"], per_device, rtol=1e-15)


def test_csv_has_plain_decimals_that_round_trip(tmp_path):
    """Pins: no exponent notation in results.csv, and every float reads back bit for bit."""
    sc = tmp_path / "s.yaml"
    sc.write_text(SIM.replace("REQUESTS", "200"), encoding="utf-8")
    df, out = runner.run(sc, tmp_path / "o", quiet=True, jobs=1)
    text = (out / "results.csv").read_text(encoding="utf-8")
    assert not re.search(r"\d[eE][-+]\d", text)
    back = pd.read_csv(out / "results.csv")
    for c in df.columns:
        if df[c].dtype.kind == "f":
            a, b = df[c].to_numpy(float), back[c].to_numpy(float)
            assert np.array_equal(a, b, equal_nan=True), c
    assert [c for c in back.columns if not columns.documented(c)] == []
    md = (out / "columns.md").read_text(encoding="utf-8")
    assert all(f"| `{c}` |" in md for c in back.columns)
    assert plain(1.34205e12) == "1342050000000" and plain(5.46e-07) == "0.000000546"


def test_workbook_has_formats_filter_frozen_identity_columns_and_provenance(tmp_path):
    """Pins the workbook's reading aids and that run.json carries code provenance."""
    pytest.importorskip("xlsxwriter")
    sc = tmp_path / "s.yaml"
    sc.write_text(SIM.replace("REQUESTS", "200"), encoding="utf-8")
    _, out = runner.run(sc, tmp_path / "o", quiet=True, jobs=1, xlsx=True, simulate=False)
    with zipfile.ZipFile(out / "results.xlsx") as z:
        wb = z.read("xl/workbook.xml").decode()
        sheet1 = z.read("xl/worksheets/sheet1.xml").decode()
        styles = z.read("xl/styles.xml").decode()
    assert all(f'name="{s}"' in wb for s in ("results", "pareto", "best", "columns", "provenance"))
    assert "<autoFilter" in sheet1 and 'xSplit="6"' in sheet1 and "<cols>" in sheet1
    assert "$#,##0.000" in styles and "0.0%" in styles
    import json
    meta = json.loads((out / "run.json").read_text())
    assert meta["python"] and meta["packages"]["pandas"] == pd.__version__
    assert "git_commit" in meta  # a hex id in a git checkout, None for an installed wheel
    assert meta["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"])
    assert meta["simulator"] in ("compiled", "python")


def test_readme_documents_every_column():
    """Pins: the README's column table is the one generated from columns.COLUMNS."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert columns.markdown() in readme, "regenerate with: python -m planner.sweeps.columns"
