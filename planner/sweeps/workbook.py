"""``results.xlsx``: the tables as sheets a person can sort and filter, plus what every column
means and where the numbers came from.

Why formats here and not in the CSV: a CSV keeps full precision for programs; the workbook
shows each column in its unit's format (dollars, seconds, shares as percentages) with widths,
an autofilter and the identity columns frozen, so the first screen is readable as opened.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from planner.sweeps.columns import describe
from planner.sweeps.export import output_error, publish_all, require

# Excel number formats by unit (columns.py); others get the general format
FORMATS = {"$": "$#,##0", "$/h": "$#,##0.00", "$/M tokens": "$#,##0.000", "tok/s": "#,##0.0", "s": "0.000",
           "share": "0.0%", "kW": "#,##0.0", "B": "#,##0", "B/token": "#,##0", "devices": "#,##0",
           "replicas": "#,##0", "users": "#,##0", "req/s": "#,##0.00", "x": "0.00", "tok/s per MW": "#,##0",
           "parameters": "#,##0", "tokens": "#,##0", "sequences": "#,##0", "systems": "#,##0"}
FROZEN = ["point", "model", "hardware", "weights_precision", "kv_precision", "context_tokens"]


def write_xlsx(tables: dict[str, pd.DataFrame], path: Path, provenance: dict | None = None) -> None:
    """The workbook written atomically (see stage_xlsx)."""
    publish_all([(stage_xlsx(tables, path, provenance), path)])


def stage_xlsx(tables: dict[str, pd.DataFrame], path: Path, provenance: dict | None = None) -> str:
    """The tables as formatted sheets, a ``columns`` sheet and a ``provenance`` sheet (from run.json),
    in a temp file beside ``path`` (XlsxWriter, an optional extra): the temp file's name."""
    require("xlsxwriter", "--xlsx needs XlsxWriter", "xlsx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".xlsx", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise output_error(e, path) from None
    try:
        with pd.ExcelWriter(tmp, engine="xlsxwriter") as xw:
            for name, t in tables.items():
                _sheet(xw, name, t.replace([math.inf, -math.inf], np.nan))
            cols = list(dict.fromkeys(c for t in tables.values() for c in t.columns))
            doc = pd.DataFrame([(c, *describe(c)) for c in cols], columns=["column", "unit", "meaning"])
            _sheet(xw, "columns", doc, freeze=1, widths={"meaning": 100})
            if provenance:
                _sheet(xw, "provenance", _flat(provenance), freeze=1, widths={"value": 100})
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else e.__context__  # XlsxWriter wraps the OSError
        if isinstance(cause, OSError):
            raise output_error(cause, path) from None
        raise
    return tmp


def _sheet(xw, name: str, t: pd.DataFrame, freeze: int | None = None, widths: dict | None = None) -> None:
    t.to_excel(xw, sheet_name=name, index=False)
    ws, book = xw.sheets[name], xw.book
    frozen = freeze if freeze is not None else len([c for c in FROZEN if c in t.columns[:len(FROZEN)]])
    ws.freeze_panes(1, frozen)
    if len(t.columns):
        ws.autofilter(0, 0, max(len(t), 1), len(t.columns) - 1)
    cache: dict[str, object] = {}
    for j, c in enumerate(t.columns):
        unit = describe(c)[0]
        fmt = FORMATS.get(unit)
        if fmt and fmt not in cache:
            cache[fmt] = book.add_format({"num_format": fmt})
        width = (widths or {}).get(c) or _width(t[c], c)
        ws.set_column(j, j, width, cache.get(fmt) if fmt else None)


def _width(col: pd.Series, name: str) -> float:
    """Wide enough for the header and typical values, never wider than 40 characters."""
    sample = col.dropna().astype(str).head(200)
    longest = int(sample.str.len().quantile(0.9)) if len(sample) else 0
    return float(min(40, max(len(name) * 0.9, longest, 8) + 2))


def _flat(obj, prefix: str = "") -> pd.DataFrame:
    """run.json as key/value rows (nested keys dotted; lists as text)."""
    rows = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flat(v, key + ".").values.tolist()
        else:
            rows.append((key, v if isinstance(v, (int, float, str, bool)) or v is None else str(v)))
    return pd.DataFrame(rows, columns=["key", "value"])

