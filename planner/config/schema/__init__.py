"""Validated shapes of every YAML file: hardware specs, the bonded-SRAM option, models, scenarios.

Why pydantic: unknown keys, wrong types and out-of-range values become precise,
located errors (see :mod:`planner.config.load`); the rest of the code can trust its inputs.
All quantities are SI after validation; YAML may say "44 GB", "150 GB/s", "17 us".

Start-up: each model builds its validator on first use (``defer_build``; defaults that are models
come from ``default_factory`` for the same reason), and these modules do without ``from __future__
import annotations`` (pydantic would evaluate every annotation string as a class is made). Importing
the schema then costs ~40 ms instead of ~150 ms; ``plan estimate`` builds only what it validates.
"""
from planner.config.schema.base import (  # noqa: F401 - the schema's public names
    Strict,
    Sourced,
    Bytes,
    BytesPerS,
    Flops,
    Seconds,
    Watts,
    Hertz,
    Number,
    Fraction,
    PRECISIONS,
    Precision,
    Confidence,
    PREFILL_CHUNK,
    MAX_TOKENS,
    MAX_DEVICES,
    MAX_REQUESTS)
from planner.config.schema.hardware import (  # noqa: F401 - the schema's public names
    MemorySpec,
    CoreArray,
    ComputeSpec,
    LinkSpec,
    ScaleUpSpec,
    LatencySpec,
    LatencyOverride,
    PowerSpec,
    IdlePower,
    LoadPower,
    CostSpec,
    ExternalMemorySpec,
    Uncertainty,
    HardwareSpec,
    BondedSramSpec)
from planner.config.schema.model import (  # noqa: F401 - the schema's public names
    IndexerSpec,
    AttentionSpec,
    MoESpec,
    CoarseSpec,
    DraftSpec,
    ModelSpec)
from planner.config.schema.scenario import (  # noqa: F401 - the schema's public names
    PrecisionChoice,
    SpecDecode,
    PrefillPool,
    Disaggregated,
    Deployment,
    BondedSramChoice,
    HardwareOptions,
    Service,
    SLO,
    Capacity,
    PriceRatio,
    Economics,
    skip_matches,
    SweepGroup,
    Scenario,
    SLO_TARGETS)
from planner.config.schema.workload import (  # noqa: F401 - the schema's public names
    LengthDist,
    TimeDist,
    Agentic,
    Arrival,
    Prefix,
    Demand,
    Workload)
