"""Write results so a half-written file never exists: temp file in the same folder, then rename."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def require(module: str, what: str, extra: str) -> None:
    """An optional extra is installed, or a RuntimeError saying how to install it."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"{what}: pip install 'wafer-planner[{extra}]'")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: Path) -> None:
    """Rename a finished temp file into place with ordinary permissions (mkstemp makes them 0600)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plain(x: float) -> str:
    """A float as a plain decimal that reads back as the same float: the shortest digits that
    round-trip, never an exponent ("141105000000", "0.000000546133"), so a spreadsheet and a
    person read the same number and nothing is lost."""
    if not math.isfinite(x):
        return str(x)  # nan, inf, -inf
    return np.format_float_positional(x, unique=True, trim="-")


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Spreadsheet-friendly CSV: no index column, floats as plain round-tripping decimals."""
    mixed = [c for c in df.columns if df[c].dtype == object and df[c].map(lambda v: isinstance(v, float)).any()]
    if mixed:  # floats inside text columns get the same treatment
        df = df.assign(**{c: df[c].map(lambda v: plain(v) if isinstance(v, float) and not math.isnan(v) else v)
                          for c in mixed})
    atomic_write_text(path, df.to_csv(index=False, float_format=plain))


def write_json(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
