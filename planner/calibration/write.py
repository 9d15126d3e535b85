"""Writing fitted values and uncertainty bands back into the hardware spec files, comments kept."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from planner import catalog
from planner.config.errors import ConfigError, Problem
from planner.config.yamlio import load_file
from planner.calibration.data import PARAMS, param_path
from planner.calibration.fit import FamilyFit

# ---------------------------------------------------------------- writing back
_VALUE = re.compile(r"^(\s*)([-+0-9.eE]+(?:\s*[A-Za-zµ/]+)?)(\s*(?:#.*)?)$")


def _format(name: str, v: float) -> str:
    base = name.partition("@")[0]
    if base == "clock":
        return f"{v / 1e9:.4g} GHz"
    if PARAMS[base][0][0] not in ("latency", "io"):
        return f"{v:.4g}"
    return f"{v * 1e3:.4g} ms" if v >= 1e-3 else f"{v * 1e6:.4g} us"


def write_back(fits: list[FamilyFit]) -> list[str]:
    """Rewrite the fitted values and the uncertainty band in the family heads' YAML files in
    place (comments kept). Only values the file itself sets are rewritten. Every file's new
    text is made before any is written, and each is written to a temp file and renamed, so a
    value that cannot be rewritten (or a failed write) leaves no file half-updated and no
    family's file updated while another's failed to be prepared."""
    texts: dict[Path, str] = {}
    for ff in fits:
        path = catalog.find("hardware", ff.family.head)
        edits = {param_path(n): _format(n, after) for n, (_, after) in ff.params.items()}
        if ff.cv != "none":
            lo, hi = ff.band
            held = [x for x in ff.predictions if x.held_out is not None]
            edits[("uncertainty", "speed_low")] = f"{lo:.3g}"
            edits[("uncertainty", "speed_high")] = f"{hi:.3g}"
            edits[("uncertainty", "points")] = str(len(held))
            edits[("uncertainty", "median_abs_error")] = \
                f"{float(np.median([abs(x.held_out_error) for x in held])):.3g}"
        texts[path] = _rewrite(path, edits)
    staged: list[tuple[str, Path]] = []
    try:  # every file to a temp name first, then all renamed: a failed write changes none
        for path, text in texts.items():
            staged.append((_stage(path, text), path))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
    return [str(p) for p in texts]


def _stage(path: Path, text: str) -> str:
    """``text`` in a temp file beside ``path``, with the file's mode: the temp file's name."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    return tmp


def _rewrite(path: Path, edits: dict[tuple, str]) -> str:
    """The file's text with ``edits`` applied (nothing written)."""
    loc = load_file(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for key_path, new in edits.items():
        if key_path not in loc.value_marks:
            raise ConfigError([Problem(str(path), None, None, ".".join(key_path),
                                       "fitted value is not set in this file; add it, then re-run")])
        line, col = loc.value_marks[key_path]
        text = lines[line - 1]
        head, rest = text[: col - 1], text[col - 1:]
        m = _VALUE.match(rest.rstrip("\n"))
        if not m:
            raise ConfigError([Problem(str(path), line, col, ".".join(key_path), "cannot rewrite this value")])
        lines[line - 1] = head + new + m.group(3) + ("\n" if text.endswith("\n") else "")
    return "".join(lines)
