"""Friendly quantities in YAML ("44 GB", "150 GB/s", "1.2 Tb/s", "17 us") -> SI floats.

Why: spec files are read and argued over by people; "21 PB/s" is checkable at a glance,
21e15 is not. Inside the code everything is SI (bytes, bytes/s, FLOP/s, s, W).
Bits vs bytes is decided by case: ``B`` = byte, ``b`` = bit (so "1.2 Tb/s" = 150e9 B/s): links
are quoted in bits per second. A memory size in ``b`` ("264 Gb") is an error, since memory is
quoted in bytes and a lower-case b there is a typo far more often than bits; write "264 Gbit"
to mean bits. Decimal prefixes (k, M, G, T, P, E) are powers of 1000; binary ones (KiB, MiB,
GiB, TiB) of 1024. A plain count (parameters) also takes ``B`` for billions ("1.2B").

A bare number is SI (bytes, bytes/s, FLOP/s, Hz, s, W), as ``plan show`` prints it. Where a
bare number is too small to be meant in SI (a memory size or bandwidth below 1e6, a compute
rate below 1e9, a clock below 1e3: "capacity: 264") a unit was left out, and it is an error
that suggests the likely one ("did you mean 264 GB?") rather than a silent 264 bytes.
"""
from __future__ import annotations

import math
import re

_DEC = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}

_NUM = r"(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_RE = re.compile(rf"^\s*{_NUM}\s*(?P<unit>[^\s\d].*?)?\s*$")

# kind -> (smallest plausible bare SI number, the unit a smaller one most likely left out)
_BARE_FLOOR = {"bytes": (1e6, "GB"), "bytes_per_s": (1e6, "GB/s"), "flops": (1e9, "TFLOP/s"), "hertz": (1e3, "GHz")}
_SI = {"bytes": "bytes", "bytes_per_s": "bytes/s", "flops": "FLOP/s", "hertz": "Hz"}
_WHAT = {"bytes": "memory size", "bytes_per_s": "bandwidth", "flops": "compute rate", "hertz": "clock",
         "seconds": "time", "watts": "power", "tok_s": "token rate"}



class UnitError(ValueError):
    """A quantity string that cannot be read unambiguously."""


def _prefix(p: str) -> float:
    if p in _BIN:
        return _BIN[p]
    if p in _DEC:
        return _DEC[p]
    raise UnitError(f"unknown prefix {p!r}")


def _split(text: str) -> tuple[float, str]:
    m = _RE.match(text)
    if not m:
        raise UnitError(f"not a number with a unit: {text!r}")
    return float(m.group("num")), (m.group("unit") or "").strip()


def parse(value: object, kind: str) -> float:
    """Read ``value`` (number or string) as a quantity of ``kind``; return SI float.

    Plain numbers are taken as already SI. Strings must carry a unit of the right kind,
    except for kind ``number`` ("1e12", "2.5", "1.5 M").
    """
    if isinstance(value, bool):
        raise UnitError("expected a number, got a boolean")
    if isinstance(value, (int, float)):
        out = _bare(float(value), kind)
    elif isinstance(value, str):
        out = _parse_str(value, kind)
    else:
        raise UnitError(f"expected a number or a quantity string, got {type(value).__name__}")
    if math.isnan(out):
        raise UnitError("NaN is not a valid quantity")
    if math.isinf(out):
        raise UnitError("must be finite (an infinite or overflowing number, such as 1e999)")
    return out


def _bare(x: float, kind: str) -> float:
    """A bare number: SI, unless too small to be meant so (a unit left out)."""
    floor = _BARE_FLOOR.get(kind)
    if floor and 0 < abs(x) < floor[0]:
        shown = f"{x:g}"
        raise UnitError(f"a {_WHAT[kind]} needs a unit: a bare {shown} would be {shown} {_SI[kind]}; "
                        f"did you mean {shown} {floor[1]}?")
    return x


def _parse_str(text: str, kind: str) -> float:
    num, unit = _split(text)
    if unit == "":
        return _bare(num, kind)
    if kind == "number":  # parameter counts: "B" is billions, as model names write them (1.2B = 1.2G)
        return num * (1e9 if unit == "B" else _prefix(unit))
    if kind == "seconds":
        if unit in _TIME:
            return num * _TIME[unit]
        raise UnitError(f"unknown time unit {unit!r} (use s, ms, us, ns, min, h)")
    if kind == "tok_s":
        if unit in ("tok/s", "tokens/s", "token/s"):
            return num
        raise UnitError(f"unknown token-rate unit {unit!r} (use tok/s)")
    if kind in ("bytes", "bytes_per_s"):
        rate = kind == "bytes_per_s"
        m = re.fullmatch(r"(Ki|Mi|Gi|Ti|Pi|[kKMGTPE]?)(B|b|bit|bits|byte|bytes)" + (r"(?:/s|ps)" if rate else ""), unit)
        if not m:
            hint = "GB/s, TB/s, PB/s, Gb/s, Tb/s, ..." if rate else "B, kB, MB, GB, TB, GiB, ... or Gbit for bits"
            raise UnitError(f"unknown {'bandwidth' if rate else 'size'} unit {unit!r} (use {hint})")
        if not rate and m.group(2) == "b":
            raise UnitError(f"memory sizes are in bytes: {text.strip()!r} is bits ({num:g} {m.group(1)}b = "
                            f"{fmt_bytes(num * _prefix(m.group(1)) / 8)}); did you mean {num:g} {m.group(1)}B? "
                            f"(write {num:g} {m.group(1)}bit for bits)")
        scale = 1.0 if m.group(2) in ("B", "byte", "bytes") else 1 / 8
        return num * _prefix(m.group(1)) * scale
    if kind == "flops":
        m = re.fullmatch(r"([kKMGTPE]?)(?:FLOP/s|FLOPS|flop/s|flops|OP/s|OPS)", unit)
        if not m:
            raise UnitError(f"unknown compute unit {unit!r} (use TFLOP/s, PFLOP/s, ...)")
        return num * _prefix(m.group(1))
    if kind == "hertz":
        m = re.fullmatch(r"([kKMG]?)Hz", unit)
        if not m:
            raise UnitError(f"unknown frequency unit {unit!r} (use Hz, MHz, GHz)")
        return num * _prefix(m.group(1))
    if kind == "watts":
        m = re.fullmatch(r"([kKMG]?)W", unit)
        if not m:
            raise UnitError(f"unknown power unit {unit!r} (use W, kW, MW)")
        return num * _prefix(m.group(1))
    raise UnitError(f"unknown quantity kind {kind!r}")


def fmt_bytes(n: float) -> str:
    """Human-readable decimal size, for tables and reasons ("671 GB")."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_rate(n: float, unit: str) -> str:
    for p, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {p}{unit}"
    return f"{n:.3g} {unit}"


def parse_tokens(text: str) -> int:
    """Token counts as context windows are quoted: "32k" = 32,768 (k = 1024), "8192" = 8,192."""
    t = str(text).strip().lower().replace(",", "").replace("_", "")
    scale = 1
    if t.endswith("k"):
        t, scale = t[:-1], 1024
    elif t.endswith("m"):
        t, scale = t[:-1], 1024 * 1024
    try:
        value = float(t) * scale
    except ValueError:
        raise ValueError(f"not a token count: {text!r} (e.g. 8192, 32k, 128k)") from None
    if value < 1 or value != int(value):
        raise ValueError(f"not a whole positive token count: {text!r}")
    return int(value)
