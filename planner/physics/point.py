"""One configuration's physics, built once: model shape, device, placement, step model.

``Config`` holds everything resolved for one point (no file access); ``build_point`` turns
it into ``Built``, which the analytic estimate, the simulator's round model, calibration
and the cost model all share, so a point's physics is constructed once.
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.config.schema import PREFILL_CHUNK, BondedSramSpec, HardwareSpec, ModelSpec, SpecDecode
from planner.physics.hardware import Device, Infeasible, bonded_misfit, native_misfit, resolve
from planner.physics.model import ModelShape, build
from planner.physics.placement import Placement, place
from planner.physics.step import StepModel


@dataclass(frozen=True)
class Config:
    """Everything the analytic model needs for one point (all resolved, no file access)."""

    model: ModelSpec
    hardware: HardwareSpec
    count: int | None = None
    weights: str = "bf16"
    kv: str | None = None
    mode: str = "auto"
    embeddings: str = "bf16"
    context: int = 8192
    prompt: int | None = None
    output: int = 1024
    batch: int | None = None  # None: as many as fit
    min_sequences: int = 1  # with count None: size the pipeline for this many sequences
    bonded: BondedSramSpec | None = None
    bonded_layers: int = 0
    software: str | None = None
    spec_decode: SpecDecode | None = None
    microbatches: int | None = None
    prefill_chunk: int = PREFILL_CHUNK
    cached: int = 0  # tokens of each prompt found cached (workload.prefix): not prefilled
    shared_prefix: int = 0  # a prefix every request shares, its KV held once per replica (then cached = it)
    mla_attention: str = "dp"  # GPUs serving MLA models: "dp" (sharded by sequence) or "tp" (latent KV replicated)
    gqa_attention: str = "tp"  # GPUs serving GQA models: "tp" (heads sharded) or "dp" (sharded by sequence)

    @property
    def kv_precision(self) -> str:
        if self.kv is not None:
            return self.kv
        return self.weights if self.weights in ("fp16", "bf16", "fp8") else "fp8"


def memory_limit(hardware: HardwareSpec) -> str:
    """The bottleneck name for running out of memory on this hardware."""
    return "sram_capacity" if hardware.kind == "wafer" else "hbm_capacity"


@dataclass(frozen=True)
class Built:
    shape: ModelShape
    device: Device
    placement: Placement
    steps: StepModel


def draft_misfit(cfg: Config) -> str | None:
    """Why ``cfg``'s speculative decoding has no draft to run (None: it has one)."""
    sd = cfg.spec_decode
    if sd is not None and sd.draft_params is None and cfg.model.draft is None:
        return f"{cfg.model.name} has no draft (MTP) head: set spec_decode.draft_params"
    return None


def misfits(cfg: Config) -> list[tuple[str, str]]:
    """(option, why) for each option the model or hardware cannot take: bonded SRAM layers off
    a wafer or beyond their spec's maximum, native precision without its rate, drafts with no
    draft. build_point raises them as Infeasible (a sweep's infeasible rows); a single
    scenario reports them as input mistakes (plan/resolve.py)."""
    hw = cfg.hardware
    found = (("bonded_layers", bonded_misfit(hw, cfg.bonded, cfg.bonded_layers)),
             ("mode", native_misfit(hw.name, hw.compute.peaks(), cfg.weights, cfg.mode)),
             ("spec_decode", draft_misfit(cfg)))
    return [(option, why) for option, why in found if why]


def build_point(cfg: Config) -> Built:
    """Model shape, device, placement and step model for ``cfg``; raises Infeasible."""
    shape = build(cfg.model)
    dev = resolve(cfg.hardware, cfg.bonded, cfg.bonded_layers, cfg.software)
    dev.flops_for(cfg.weights, cfg.mode)  # fail early on an impossible precision mode
    if why := draft_misfit(cfg):
        raise Infeasible(why)
    draft = 0.0
    if cfg.spec_decode is not None:
        draft = cfg.spec_decode.draft_params if cfg.spec_decode.draft_params is not None else cfg.model.draft.params
    pl = place(shape, dev, cfg.count, cfg.weights, cfg.kv_precision, cfg.context, cfg.embeddings, draft,
               min_sequences=cfg.min_sequences, mla_attention=cfg.mla_attention, shared_tokens=cfg.shared_prefix,
               gqa_attention=cfg.gqa_attention)
    steps = StepModel(shape, pl, dev, cfg.weights, cfg.kv_precision, cfg.mode, cfg.spec_decode, cfg.microbatches)
    return Built(shape, dev, pl, steps)
