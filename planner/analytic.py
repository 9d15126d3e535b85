"""Analytic answer for one configuration: fit, placement, speeds, TTFT, bottleneck.

Shared by ``plan estimate``, ``plan calibrate`` and the sweep's fast pre-pass, so one
number means the same thing everywhere. Infeasible configurations come back as
``fits=False`` with a reason, never as an exception.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config.schema import BondedSramSpec, HardwareSpec, ModelSpec, SpecDecode
from .hardware import Device, Infeasible, resolve
from .model import ModelShape, build
from .perf import StepModel
from .placement import Placement, place


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
    prefill_chunk: int = 2048
    mla_attention: str = "dp"  # GPUs serving MLA models: "dp" (sharded by sequence) or "tp" (latent KV replicated)

    @property
    def kv_precision(self) -> str:
        if self.kv is not None:
            return self.kv
        return self.weights if self.weights in ("fp16", "bf16", "fp8") else "fp8"


# estimate()'s names for the figures the simulator also produces, as sweep rows spell them
RENAMED = {"decode_tok_s_per_user": "decode_tok_s_per_user_analytic", "tpot_s": "tpot_analytic_s",
           "ttft_s": "ttft_analytic_s", "aggregate_tok_s": "aggregate_tok_s_analytic",
           "input_tok_s": "input_tok_s_analytic"}


def memory_limit(hardware: HardwareSpec) -> str:
    """The bottleneck name for running out of memory on this hardware."""
    return "sram_capacity" if hardware.kind == "wafer" else "hbm_capacity"


@dataclass(frozen=True)
class Built:
    shape: ModelShape
    device: Device
    placement: Placement
    steps: StepModel


def build_point(cfg: Config) -> Built:
    """Model shape, device, placement and step model for ``cfg``; raises Infeasible."""
    shape = build(cfg.model)
    dev = resolve(cfg.hardware, cfg.bonded, cfg.bonded_layers, cfg.software)
    dev.flops_for(cfg.weights, cfg.mode)  # fail early on an impossible precision mode
    draft = 0.0
    if cfg.spec_decode is not None:
        if cfg.spec_decode.draft_params is not None:
            draft = cfg.spec_decode.draft_params
        elif cfg.model.draft is not None:
            draft = cfg.model.draft.params
        else:
            raise Infeasible(f"{cfg.model.name} has no draft (MTP) head: set spec_decode.draft_params")
    pl = place(shape, dev, cfg.count, cfg.weights, cfg.kv_precision, cfg.context, cfg.embeddings, draft,
               min_sequences=cfg.min_sequences, mla_attention=cfg.mla_attention)
    steps = StepModel(shape, pl, dev, cfg.weights, cfg.kv_precision, cfg.mode, cfg.spec_decode, cfg.microbatches)
    return Built(shape, dev, pl, steps)


def speed_band(dev: Device, r) -> tuple[float, float]:
    """(low, high) multipliers on a predicted speed: the hardware's held-out calibration spread
    (measured / predicted, 10th-90th percentile) times what the clock range does to the part
    of the round that is compute (a wafer's clock is not published)."""
    compute = r.parts.get("compute", 0.0) + r.parts.get("cycle_compute", 0.0)
    c_lo, c_hi = dev.clock_range
    t = r.round_s
    slow = t / (t + compute * (1 / c_lo - 1)) if t > 0 else 1.0
    fast = t / (t + compute * (1 / c_hi - 1)) if t > 0 else 1.0
    return dev.speed_band[0] * slow, dev.speed_band[1] * fast


def estimate(cfg: Config) -> dict:
    """One flat dict of analytic results (SI units, unit in the key name)."""
    prompt = cfg.prompt if cfg.prompt is not None else max(1, cfg.context - cfg.output)
    row: dict = {"fits": False, "reason": "", "model": cfg.model.name, "hardware": cfg.hardware.name,
                 "hypothetical": bool(cfg.hardware.hypothetical or cfg.bonded_layers),
                 "weights_precision": cfg.weights, "kv_precision": cfg.kv_precision,
                 "context_tokens": cfg.context, "prompt_tokens": prompt, "output_tokens": cfg.output}
    try:
        b = build_point(cfg)
    except Infeasible as e:
        row.update(reason=str(e), bottleneck=memory_limit(cfg.hardware) if e.limit == "capacity" else "unsupported")
        return row
    pl, sm, dev = b.placement, b.steps, b.device
    batch = cfg.batch if cfg.batch is not None else pl.max_concurrent
    row.update(
        device=dev.name, devices=pl.devices, systems=-(-pl.devices // dev.devices_per_system),
        stages=len(pl.stages), tp=pl.tp,
        layers_per_stage=round(b.shape.layers / len(pl.stages), 2), layers_split=pl.layers_split,
        weight_bytes=pl.weight_bytes, kv_bytes_per_token=pl.kv_bytes_per_token,
        kv_bytes_per_seq=pl.kv_bytes_per_seq, capacity_bytes_per_device=dev.capacity_bytes,
        max_concurrent_sequences=pl.max_concurrent, compute_mode=sm.compute_mode,
        total_params=b.shape.total_params, active_params=b.shape.active_params,
        accepted_tokens_per_step=sm.accepted)
    if batch > pl.max_concurrent:
        row.update(reason=f"batch {batch} > {pl.max_concurrent} sequences of {cfg.context} tokens that fit",
                   bottleneck=memory_limit(cfg.hardware))
        return row
    # decode at the mean context of a sequence's life: prompt + output/2 (capacity is sized at the max)
    mean_ctx = min(cfg.context, prompt + cfg.output / 2)
    r, mixed = sm.steady_round(batch, mean_ctx, prompt, cfg.output, cfg.prefill_chunk)
    t_round = mixed.round_s
    single = sm.decode_round(1, mean_ctx)
    per_user = r.accepted_tokens / t_round
    lo, hi = speed_band(dev, mixed)
    row.update(speed_band_low=lo, speed_band_high=hi, speed_band_source=dev.speed_band_source)
    row.update(
        fits=True, batch=batch, microbatches=r.microbatches,
        decode_tok_s_per_user=per_user, tpot_s=1.0 / per_user,
        single_stream_tok_s=single.accepted_tokens / single.round_s,
        aggregate_tok_s=batch * per_user, input_tok_s=batch * per_user * prompt / cfg.output,
        ttft_s=sm.ttft_s(prompt, 0, cfg.prefill_chunk), round_s=t_round, decode_round_s=r.round_s,
        token_latency_s=r.token_latency_s, cycle_s=r.cycle_s, prefill_share=1.0 - r.round_s / t_round,
        bottleneck=mixed.bottleneck,
        **{f"time_{k.removeprefix('cycle_')}_s": v for k, v in mixed.parts.items()})
    return row
