"""Write results so a half-written file never exists: temp file in the same folder, then rename.

A write that fails (read-only folder, full disk, a path under /proc) raises OutputError, an
OSError naming the file it was writing, so the command can say so in one line and exit 1."""
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


class OutputError(OSError):
    """Writing an output failed; ``filename`` is the file or folder being written."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def output_error(e: OSError, path) -> OutputError:
    """``e`` as an OutputError naming ``path`` (an OSError from write() or fsync() names no file)."""
    if isinstance(e, OutputError):
        return e
    return OutputError(e.errno, e.strerror or str(e), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: Path) -> None:
    """Rename a finished temp file into place with ordinary permissions (mkstemp makes them 0600)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def stage_text(path: Path, text: str) -> str:
    """``text`` in a temp file beside ``path`` (not yet in place): the name of the temp file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise output_error(e, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise output_error(e, path) from None
        raise
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    tmp = stage_text(path, text)
    try:
        publish(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise output_error(e, path) from None
        raise


def plain(x: float) -> str:
    """A float as a plain decimal that reads back as the same float: the shortest digits that
    round-trip, never an exponent ("141105000000", "0.000000546133"), so a spreadsheet and a
    person read the same number and nothing is lost."""
    if not math.isfinite(x):
        return str(x)  # nan, inf, -inf
    return np.format_float_positional(x, unique=True, trim="-")


def publish_all(staged: list[tuple[str, Path]]) -> None:
    """Rename every staged (temp, final) pair into place, in order; on a failure the temps left
    are removed. Stage them all first: then a failure while writing leaves the old set whole."""
    try:
        for tmp, path in staged:
            try:
                publish(tmp, path)
            except OSError as e:
                raise output_error(e, path) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def csv_text(df: pd.DataFrame) -> str:
    """Spreadsheet-friendly CSV: no index column, floats as plain round-tripping decimals."""
    mixed = [c for c in df.columns if df[c].dtype == object and df[c].map(lambda v: isinstance(v, float)).any()]
    if mixed:  # floats inside text columns get the same treatment
        df = df.assign(**{c: df[c].map(lambda v: plain(v) if isinstance(v, float) and not math.isnan(v) else v)
                          for c in mixed})
    return df.to_csv(index=False, float_format=plain)


def json_text(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, csv_text(df))


def write_json(obj: dict, path: Path) -> None:
    atomic_write_text(path, json_text(obj))
