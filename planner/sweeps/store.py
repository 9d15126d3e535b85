"""The per-point store: each finished row in ``OUT/.points/<key>.json``, checked before reuse.

A stored file is a JSON object ``{"format", "key", "config_hash", "row"}``. The row is kept
without the point's index, group and axis columns (the same configuration can sit at several
points of one sweep, under other axes) and they are put back from the point on reuse. A file
that is not such an object, belongs to another point, or lacks the identity columns with their
types is never trusted: the point is evaluated again and a one-line warning says why, since a
blank or foreign row would silently change the tables (pareto, best).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from planner.sweeps.frontier import FRONTIER_KEY
from planner.version import __version__
from planner.plan.scenario import Loaded, Point
from planner.sweeps.export import atomic_write_text
from planner.sweeps.tables import axis_columns

FORMAT = 1
# columns every stored row has, with the JSON types they may take (a bool is not a number here)
REQUIRED = {"feasible": (bool,), "slo_pass": (bool,), "reason": (str,), "bottleneck": (str, type(None)),
            "model": (str,), "hardware": (str,), "config_hash": (str,), "seed": (int,)}
SCALAR = (str, int, float, bool, type(None))


class Store:
    """Finished rows, one JSON file per point, so an interrupted sweep loses nothing.

    A row is reused only for the same resolved point, the same model and hardware spec
    contents (an edited spec file recomputes), the same planner code and the same simulate
    flag, and only when the file passes ``check``."""

    def __init__(self, out: Path, simulate: bool | None, loaded: Loaded | None = None, warn=None):
        self.dir = out / ".points"
        self.salt = f"{_code_hash()}|{simulate}"
        self.keys: dict[int, str] = {}
        self.invalid = 0  # stored files found bad and evaluated again (run.json: stored_invalid)
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def key(self, pt: Point) -> str:
        if pt.index not in self.keys:
            self.keys[pt.index] = self._key(pt)
        return self.keys[pt.index]

    def _key(self, pt: Point) -> str:
        cfg = pt.config
        specs = "" if cfg is None else json.dumps(
            [cfg.model.model_dump(mode="json"), cfg.hardware.model_dump(mode="json"),
             cfg.bonded.model_dump(mode="json") if cfg.bonded else None], sort_keys=True, default=str)
        blob = f"{self.salt}|{pt.config_hash}|{specs}"
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def path(self, pt: Point) -> Path:
        return self.dir / f"{self.key(pt)}.json"

    def get(self, pt: Point) -> dict | None:
        """The point's stored row, or None (absent, or bad: then warned about and counted)."""
        f = self.path(pt)
        try:
            text = f.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # a folder in its place, unreadable, not UTF-8
            return self._bad(pt, f, f"unreadable ({getattr(e, 'strerror', None) or type(e).__name__})")
        try:
            rec = json.loads(text)
        except ValueError:
            return self._bad(pt, f, "not JSON")
        why = self.check(pt, rec)
        if why:
            return self._bad(pt, f, why)
        return {**rec["row"], "point": pt.index, "group": pt.group, **axis_columns(pt.values)}

    def check(self, pt: Point, rec) -> str:
        """Why ``rec`` is not this point's stored row ("" when it is)."""
        if not isinstance(rec, dict):
            return f"not a JSON object (a {type(rec).__name__})"
        if rec.get("format") != FORMAT:
            return "not a stored point of this format"
        if rec.get("key") != self.key(pt) or rec.get("config_hash") != pt.config_hash:
            return "stored for another point"
        row = rec.get("row")
        if not isinstance(row, dict):
            return "no row object"
        for name, types in REQUIRED.items():
            v = row.get(name, ...)
            if v is ...:
                return f"column {name} missing"
            if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
                return f"column {name} is a {type(v).__name__}"
        if row["config_hash"] != pt.config_hash or row["seed"] != pt.scenario.seed:
            return "row of another configuration or seed"
        if row["bottleneck"] == "error":
            return "a failed point"
        nested = next((k for k, v in row.items() if not isinstance(v, SCALAR) and k != FRONTIER_KEY), None)
        if nested is not None:
            return f"column {nested} is not a plain value"
        curve = row.get(FRONTIER_KEY, [])
        if not isinstance(curve, list) or not all(isinstance(f, dict) and all(isinstance(v, SCALAR)
                                                                              for v in f.values()) for f in curve):
            return "its frontier is not a list of plain rows"
        return ""

    def _bad(self, pt: Point, f: Path, why: str) -> None:
        self.invalid += 1
        self.warn(f"warning: stored point {pt.index} ignored ({f}: {why}); evaluating it again")
        return None

    def put(self, pt: Point, row: dict) -> None:
        own = {"point", "group", *axis_columns(pt.values)}
        rec = {"format": FORMAT, "key": self.key(pt), "config_hash": pt.config_hash,
               "row": {k: v for k, v in row.items() if k not in own}}
        atomic_write_text(self.path(pt), json.dumps(rec, default=_plain, allow_nan=True))

    def clear(self) -> None:
        for f in self.dir.glob("*.json"):
            f.unlink(missing_ok=True)


def _code_hash() -> str:
    """The planner's own source (and version): stored rows from other code are not reused."""
    h = hashlib.sha256(__version__.encode())
    root = Path(__file__).resolve().parents[1]  # the whole planner package
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _plain(o):
    return o.item() if isinstance(o, np.generic) else str(o)
