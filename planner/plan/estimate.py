"""Analytic answer for one configuration: fit, placement, speeds, TTFT, bottleneck.

Shared by ``plan estimate``, ``plan calibrate``, the capacity search's first guess and the
sweep's pre-pass, so one number means the same thing everywhere. Infeasible configurations
come back as an :class:`Estimate` with ``fits=False`` and a reason, never as an exception.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from planner.physics.hardware import Device, Infeasible
from planner.physics.point import Built, Config, build_point, memory_limit


@dataclass(frozen=True)
class Estimate:
    """The analytic figures of one replica at one batch (SI units, unit in the name).

    Fields after ``reason`` stay None when the estimate stopped before reaching them (the
    model did not place, or the batch does not fit)."""

    model: str
    hardware: str
    hypothetical: bool
    weights_precision: str
    kv_precision: str
    context_tokens: int
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0  # of each prompt, found cached (workload.prefix): not prefilled
    fits: bool = False
    reason: str = ""
    bottleneck: str | None = None
    # placement (known once the model places)
    device: str | None = None
    devices: int | None = None
    systems: int | None = None
    stages: int | None = None
    tp: int | None = None
    layers_per_stage: float | None = None
    layers_split: int | None = None
    weight_bytes: float | None = None
    kv_bytes_per_token: float | None = None
    kv_bytes_per_seq: float | None = None
    shared_prefix_kv_bytes: float | None = None  # a prefix every request shares, held once per replica
    capacity_bytes_per_device: float | None = None
    max_concurrent_sequences: int | None = None
    compute_mode: str | None = None
    total_params: float | None = None
    active_params: float | None = None
    accepted_tokens_per_step: float | None = None
    # speeds (known once the batch fits)
    speed_band_low: float | None = None
    speed_band_high: float | None = None
    speed_band_source: str | None = None
    batch: int | None = None
    microbatches: int | None = None
    decode_tok_s_per_user: float | None = None
    tpot_s: float | None = None
    single_stream_tok_s: float | None = None
    aggregate_tok_s: float | None = None
    input_tok_s: float | None = None  # fresh (prefilled) input
    cached_input_tok_s: float | None = None  # input served from a cached prefix
    ttft_s: float | None = None
    round_s: float | None = None
    decode_round_s: float | None = None
    token_latency_s: float | None = None
    cycle_s: float | None = None
    prefill_share: float | None = None
    activity: float | None = None  # devices' power activity u in the steady round (README "Power")
    times: tuple = ()  # (part, seconds of the round) pairs: the round's time by mechanism

    def as_dict(self) -> dict:
        """The figures that were reached, as one flat mapping (``time_<part>_s`` per part)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "times" and getattr(self, f.name) is not None}
        out.update({f"time_{k}_s": v for k, v in self.times})
        return out


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


def estimate(cfg: Config, built: Built | None = None) -> Estimate:
    """The analytic figures for ``cfg``. ``built`` is the point's physics when already built
    (the batch, prompt, output and prefill chunk do not change it)."""
    prompt = cfg.prompt if cfg.prompt is not None else max(1, cfg.context - cfg.output)
    est = Estimate(model=cfg.model.name, hardware=cfg.hardware.name,
                   hypothetical=bool(cfg.hardware.hypothetical or cfg.bonded_layers), weights_precision=cfg.weights,
                   kv_precision=cfg.kv_precision, context_tokens=cfg.context, prompt_tokens=prompt,
                   output_tokens=cfg.output, cached_tokens=cfg.cached)
    try:
        b = built if built is not None else build_point(cfg)
    except Infeasible as e:
        return dataclasses.replace(est, reason=str(e), bottleneck=memory_limit(cfg.hardware)
                                   if e.limit == "capacity" else "unsupported")
    pl, sm, dev = b.placement, b.steps, b.device
    batch = cfg.batch if cfg.batch is not None else pl.max_concurrent
    est = dataclasses.replace(
        est, device=dev.name, devices=pl.devices, systems=-(-pl.devices // dev.devices_per_system),
        stages=len(pl.stages), tp=pl.tp,
        layers_per_stage=round(b.shape.layers / len(pl.stages), 2), layers_split=pl.layers_split,
        weight_bytes=pl.weight_bytes, kv_bytes_per_token=pl.kv_bytes_per_token,
        kv_bytes_per_seq=pl.kv_bytes_per_seq, shared_prefix_kv_bytes=pl.shared_kv_bytes,
        capacity_bytes_per_device=dev.capacity_bytes,
        max_concurrent_sequences=pl.max_concurrent, compute_mode=sm.compute_mode,
        total_params=b.shape.total_params, active_params=b.shape.active_params,
        accepted_tokens_per_step=sm.accepted)
    if batch > pl.max_concurrent:
        return dataclasses.replace(est, reason=f"batch {batch} > {pl.max_concurrent} sequences of {cfg.context} "
                                               f"tokens that fit", bottleneck=memory_limit(cfg.hardware))
    # decode at the mean context of a sequence's life: prompt + output/2 (capacity is sized at the max);
    # a cached prefix is read by attention like the rest of the context, but not prefilled
    mean_ctx = min(cfg.context, prompt + cfg.output / 2)
    cached = cfg.cached
    r, mixed, serving_s = sm.steady_round(batch, mean_ctx, prompt, cfg.output, cfg.prefill_chunk, cached)
    t_round = mixed.round_s
    out_tok_s = batch * r.accepted_tokens / serving_s  # every replacement's prefill in the replica's time
    single = sm.decode_round(1, mean_ctx)
    per_user = r.accepted_tokens / t_round
    lo, hi = speed_band(dev, mixed)
    ttft, own = sm.prefill_pass(prompt - cached, cached, cfg.prefill_chunk)  # the fresh tokens after the cached
    # power activity: the round's work plus the prefill the round time leaves out (each round
    # finishes accepted/output sequences whose own prefill sits in their TTFT), over both times
    q = r.accepted_tokens / cfg.output
    activity = sm.activity((mixed.stage_active_s + q * own) / (t_round + q * ttft))
    return dataclasses.replace(
        est, speed_band_low=lo, speed_band_high=hi, speed_band_source=dev.speed_band_source,
        fits=True, batch=batch, microbatches=r.microbatches,
        decode_tok_s_per_user=per_user, tpot_s=1.0 / per_user,
        single_stream_tok_s=single.accepted_tokens / single.round_s,
        aggregate_tok_s=out_tok_s, input_tok_s=out_tok_s * (prompt - cached) / cfg.output,
        cached_input_tok_s=out_tok_s * cached / cfg.output,
        ttft_s=ttft, round_s=t_round, decode_round_s=r.round_s,
        token_latency_s=r.token_latency_s, cycle_s=r.cycle_s, prefill_share=1.0 - r.round_s / t_round,
        activity=activity,
        bottleneck=mixed.bottleneck, times=tuple((k.removeprefix("cycle_"), v) for k, v in mixed.parts.items()))
