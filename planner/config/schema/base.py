"""Shared pieces of every file's schema: strict models, sourced numbers, quantities with units."""

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from planner.config import units
from planner.config.defaults import PREFILL_CHUNK  # noqa: F401  (re-exported: the schema's default)
from planner.config.precisions import PRECISIONS


def _q(kind: str):
    return BeforeValidator(lambda v: units.parse(v, kind))


# physical upper bounds, far above any real device or deployment (CS-3: 44 GB, 21 PB/s,
# 125 PFLOP/s claimed, 23 kW; a latency or think time of 100 days): what lies beyond is a typo
# or an overflow ("1e999 us" is infinite), and would end in inf costs or a division by zero
# (and lower bounds where a rate divides: 1 B/s, 1 FLOP/s, 1 Hz, an efficiency of 0.1%)
Bytes = Annotated[float, _q("bytes"), Field(ge=1, le=1e18)]  # 1 EB per device
BytesPerS = Annotated[float, _q("bytes_per_s"), Field(ge=1, le=1e18)]  # 1 EB/s
Flops = Annotated[float, _q("flops"), Field(ge=1, le=1e21)]  # 1 ZFLOP/s per device
Seconds = Annotated[float, _q("seconds"), Field(ge=0, le=1e7)]  # ~116 days
Watts = Annotated[float, _q("watts"), Field(ge=0, le=1e9)]  # 1 GW per system
Hertz = Annotated[float, _q("hertz"), Field(ge=1, le=1e12)]  # 1 THz
Number = Annotated[float, _q("number"), Field(le=1e18)]  # parameter counts
TokS = Annotated[float, _q("tok_s"), Field(le=1e9)]  # a speed per user
Fraction = Annotated[float, Field(ge=1e-3, le=1)]  # efficiencies, shares

MAX_TOKENS = 10 ** 9  # a context, prompt, reply or chunk (the longest windows are ~1e7)
MAX_DEVICES = 20_000  # devices per replica (Llama 405B on 230 MB LPU chips needs ~3,500)
# requests one simulation may run: ~2 minutes of wall time at the engine's ~20,000 per second
# (closed loops run at least 3 x users, agent tasks every call of every task)
MAX_REQUESTS = 2_000_000

# every other number: an int beyond this is no count of anything here (and past 2**53 float
# and int64 arithmetic go wrong), a float beyond MAX_FLOAT no rate or price
MAX_INT = 10 ** 12
MAX_FLOAT = 1e24


Precision = Literal[PRECISIONS]  # Literal["fp16", "bf16", ...]
Confidence = Literal["measured", "vendor", "secondary", "estimate", "assumption", "hypothetical", "calibrated"]


class Strict(BaseModel):
    """Unknown keys are errors; every number is finite (no inf or nan) and within MAX_INT /
    MAX_FLOAT (fields set tighter, physical bounds of their own)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False,
                              defer_build=True)  # validators built on first use: start-up

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, v):
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and abs(v) > MAX_INT:
            raise ValueError(f"must be at most {MAX_INT:,} in size")
        if isinstance(v, float) and abs(v) > MAX_FLOAT:
            raise ValueError(f"must be at most {MAX_FLOAT:g} in size")
        return v


class Sourced(Strict):
    """Every group of numbers says where it came from, so users can argue with it."""

    source: str = Field(min_length=3)
    confidence: Confidence | None = None
    notes: str | None = None
