"""Shared pieces of every file's schema: strict models, sourced numbers, quantities with units."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from planner.config import units


def _q(kind: str):
    return BeforeValidator(lambda v: units.parse(v, kind))


Bytes = Annotated[float, _q("bytes"), Field(gt=0)]
BytesPerS = Annotated[float, _q("bytes_per_s"), Field(gt=0)]
Flops = Annotated[float, _q("flops"), Field(gt=0)]
Seconds = Annotated[float, _q("seconds"), Field(ge=0)]
Watts = Annotated[float, _q("watts"), Field(ge=0)]
Hertz = Annotated[float, _q("hertz"), Field(gt=0)]
Number = Annotated[float, _q("number")]
TokS = Annotated[float, _q("tok_s")]
Fraction = Annotated[float, Field(gt=0, le=1)]

# tokens per prefill chunk unless a scenario says otherwise (chunked prefill; engines use 512-8192)
PREFILL_CHUNK = 2048

PRECISIONS = ("fp16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4")
Precision = Literal["fp16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4"]
Confidence = Literal["measured", "vendor", "secondary", "estimate", "assumption", "hypothetical", "calibrated"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Sourced(Strict):
    """Every group of numbers says where it came from, so users can argue with it."""

    source: str = Field(min_length=3)
    confidence: Confidence | None = None
    notes: str | None = None
