"""A device as the performance model sees it: one validated spec + the scenario's options.

Why a separate resolved object: the bonded-SRAM option, the software profile and the
precision mode all change capacities and rates; resolving them once here keeps placement
and the step-time model free of configuration logic.
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.config.schema import BondedSramSpec, HardwareSpec
from planner.physics.collectives import AllReduceCurve
from planner.physics.model import COMPUTE_CLASS


class Infeasible(Exception):
    """A configuration that cannot run, with the reason users will read in the CSV and what
    limited it (``capacity``: memory for weights/KV; ``unsupported``: the hardware cannot do it)."""

    def __init__(self, reason: str, limit: str = "unsupported"):
        super().__init__(reason)
        self.limit = limit


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # "wafer" (SRAM-resident pipeline: CS-3, LPU) or "gpu" (HBM, tensor parallel)
    hypothetical: bool
    capacity_bytes: float  # usable memory per device after the reserve, incl. bonded SRAM
    mem_bw_bytes_per_s: float  # effective (base and bonded tiers read in parallel)
    mem_efficiency: float
    expert_mem_efficiency: float  # reading routed experts (GPUs: grouped GEMMs)
    peak_flops: dict  # compute class -> FLOP/s, native classes only (dense, not the vendor claim)
    achievable: dict  # compute class -> share of its peak the kernels reach, relative to 16-bit
    compute_efficiency: float  # prefill-sized matmuls
    decode_efficiency: float  # decode-sized matmuls
    decode_half_rows: float | None  # set: decode efficiency grows with the step's rows (decode_eff)
    expert_compute_efficiency: float  # routed-expert GEMMs relative to dense ones
    io_bw_bytes_per_s: float
    io_latency_s: float
    hop_each_device: bool  # a token pays a hop at every device boundary, not at most one per layer
    scale_up_domain: int  # GPUs: tensor-parallel domain; wafers: 1
    scale_up_bw_bytes_per_s: float
    layer_base_s: float
    layer_per_khidden_s: float
    layer_per_gb_s: float  # wafer: per-layer time per GB of the layer's weights
    allreduce_s: float  # GPU: one all-reduce's fixed cost (only without allreduce_curve)
    alltoall_s: float  # GPU: one all-to-all's fixed cost (expert-parallel dispatch or combine)
    layer_dense_s: float  # GPU: fixed time per dense layer per step (launches, norms, sync)
    layer_moe_s: float  # GPU: fixed time per MoE layer per step (+ router, top-k, grouped GEMM)
    layer_mla_s: float  # GPU: extra fixed time per MLA-attention layer per step (its extra kernels)
    ep_imbalance: float  # GPU: busiest GPU's routed-expert load over the mean
    step_overhead_s: float
    devices_per_system: int
    system_power_w: float  # nameplate (what a facility provisions)
    system_idle_w: float  # weights loaded, no work
    system_load_w: float  # compute units busy the whole time
    memory_power_share: float  # of (load - idle): drawn while streaming memory with compute idle
    power_source: str  # how sure the idle and load figures are (confidence labels)
    system_capex_usd: float
    system_capex_low_usd: float
    system_capex_high_usd: float
    system_rental_usd_per_h: float | None
    bonded_layers: int = 0
    clock_range: tuple = (1.0, 1.0)  # compute scale at the clock's low/high end (wafers)
    speed_band: tuple = (1.0, 1.0)  # held-out measured/predicted spread (10th, 90th pct)
    speed_band_source: str = ""
    allreduce_curve: AllReduceCurve | None = None  # GPU: measured all-reduce times (collectives.py)
    low_precision_attention: dict | None = None  # phase -> measured speed-up of attention over 16-bit

    def decode_eff(self, rows: float) -> float:
        """Share of the dense peak a decode step's matmuls reach with ``rows`` tokens in the
        step: ``decode_efficiency``, or with ``decode_half_rows`` set, efficiency x m / (m + half)."""
        if self.decode_half_rows is None:
            return self.decode_efficiency
        return self.compute_efficiency * rows / (rows + self.decode_half_rows)

    @property
    def allreduce_fixed_s(self) -> float:
        """An all-reduce's fixed cost apart from its bytes (0 when measured times include it)."""
        return 0.0 if self.allreduce_curve else self.allreduce_s

    def layer_latency_s(self, hidden: int) -> float:
        """Fixed fabric latency of one layer on a wafer (0 on GPUs: their sync is the all-reduce)."""
        return self.layer_base_s + self.layer_per_khidden_s * hidden / 1024.0

    def flops_for(self, weight_precision: str, mode: str) -> tuple[float, str]:
        """(peak FLOP/s, 'native'|'storage') for weights stored at ``weight_precision``.

        storage-only: weights are dequantised and multiplied at the 16-bit rate (capacity gain only).
        """
        if why := native_misfit(self.name, self.peak_flops, weight_precision, mode):
            raise Infeasible(why)
        cls = COMPUTE_CLASS[weight_precision]
        native = cls in self.peak_flops
        if mode == "storage" or not native:
            return self.peak_flops["fp16"], "storage" if cls != "fp16" else "native"
        return self.peak_flops[cls] * self.achievable.get(cls, 1.0), "native"

    def attention_flops_for(self, weight_precision: str, kv_precision: str, mode: str,
                            phase: str = "decode") -> float:
        """Peak FLOP/s of attention in ``phase`` (decode or prefill): it multiplies activations by
        the KV cache, so it runs at the KV's compute class, never faster than the weights'
        (activations are no narrower); with a measured speed-up for a low-precision KV in that
        phase (``low_precision_attention``), at most the 16-bit rate times it."""
        w_peak, _ = self.flops_for(weight_precision, mode)
        kv_cls = COMPUTE_CLASS[kv_precision]
        kv_peak = self.peak_flops[kv_cls] * self.achievable.get(kv_cls, 1.0) if kv_cls in self.peak_flops \
            else self.peak_flops["fp16"]
        if kv_cls != "fp16" and self.low_precision_attention and phase in self.low_precision_attention:
            kv_peak = min(kv_peak, self.peak_flops["fp16"] * self.low_precision_attention[phase])
        return min(w_peak, kv_peak)


def power_source(p) -> str:
    """How sure a spec's idle and load power are, for the results' ``power_source`` column (an
    assumed figure says so; bonded SRAM layers take the wafer's shares, README "Power")."""
    if p.idle is None and p.load is None:
        return "nameplate: no idle or load figures (flat)"
    idle = f"idle {p.idle.confidence or 'unrated'}" if p.idle else "idle: none (as load)"
    load = f"load {p.load.confidence or 'unrated'}" if p.load else "load: nameplate"
    return f"{idle}; {load}"


def resolve(spec: HardwareSpec, bonded: BondedSramSpec | None = None, layers: int = 0,
            software: str | None = None) -> Device:
    """Apply a software profile and ``layers`` bonded SRAM layers to ``spec``."""
    lat = spec.latency.model_dump()
    if software is not None:
        if software not in spec.software_profiles:
            known = ", ".join(sorted(spec.software_profiles)) or "none"
            raise Infeasible(f"{spec.name} has no software profile '{software}' (known: {known})")
        over = spec.software_profiles[software].model_dump(exclude_none=True)
        over.pop("source", None)
        lat.update(over)
    base_cap = spec.memory.capacity * (1.0 - spec.memory.reserve_fraction)
    cap, bw = base_cap, spec.memory.bandwidth
    capex = {"spec": spec.cost.capex_usd, "low": spec.cost.capex_low_usd or spec.cost.capex_usd,
             "high": spec.cost.capex_high_usd or spec.cost.capex_usd}
    power = spec.power.watts
    idle, load = spec.power.idle, spec.power.load
    if why := bonded_misfit(spec, bonded, layers):
        raise Infeasible(why)
    if layers:
        extra = layers * bonded.bytes_per_layer
        # Data spread over both tiers in proportion to capacity, both read in parallel:
        # the slower tier per byte sets the pace.
        fb, fx = base_cap / (base_cap + extra), extra / (base_cap + extra)
        bw = min(bw / fb, layers * bonded.bandwidth / fx)
        cap = base_cap + extra
        per_system = spec.devices_per_system * layers
        for k in capex:
            capex[k] += per_system * bonded.capex_usd_per_layer / bonded.yield_
        power += per_system * bonded.power_w_per_layer
    su, unc = spec.scale_up, spec.uncertainty
    band = _band(unc, bonded.uncertainty if layers else None)
    return Device(
        name=spec.name + (f"+{layers}xSRAM" if layers else ""), kind=spec.kind,
        hypothetical=spec.hypothetical or bool(layers), capacity_bytes=cap, mem_bw_bytes_per_s=bw,
        mem_efficiency=spec.memory.efficiency,
        expert_mem_efficiency=spec.memory.expert_efficiency or spec.memory.efficiency,
        peak_flops=spec.compute.peaks(), compute_efficiency=spec.compute.efficiency,
        achievable={"fp8": spec.compute.fp8_achievable, "fp4": spec.compute.fp4_achievable},
        low_precision_attention=spec.compute.low_precision_attention,
        decode_efficiency=spec.compute.decode_efficiency or spec.compute.efficiency,
        decode_half_rows=spec.compute.decode_half_rows,
        expert_compute_efficiency=spec.compute.expert_efficiency,
        io_bw_bytes_per_s=spec.io.bandwidth, io_latency_s=spec.io.latency,
        hop_each_device=spec.io.hops == "devices", scale_up_domain=su.domain_size if su else 1,
        scale_up_bw_bytes_per_s=su.bandwidth if su else spec.io.bandwidth,
        layer_base_s=lat["layer_base"], layer_per_khidden_s=lat["layer_per_khidden"],
        layer_per_gb_s=lat["layer_per_gb"],
        allreduce_s=lat["allreduce"], alltoall_s=lat["alltoall"] if lat["alltoall"] is not None else lat["allreduce"],
        layer_dense_s=lat["layer_dense"], layer_moe_s=lat["layer_moe"], layer_mla_s=lat["layer_mla"],
        ep_imbalance=su.ep_imbalance if su else 1.0, step_overhead_s=lat["step_overhead"],
        devices_per_system=spec.devices_per_system, system_power_w=power,
        system_load_w=power * (load.share if load else 1.0),
        system_idle_w=power * (idle.share if idle else load.share if load else 1.0),
        memory_power_share=load.memory_share if load else 1.0, power_source=power_source(spec.power),
        system_capex_usd=capex["spec"], system_capex_low_usd=capex["low"], system_capex_high_usd=capex["high"],
        system_rental_usd_per_h=spec.cost.rental_usd_per_h, bonded_layers=layers,
        clock_range=spec.compute.clock_range,
        speed_band=band, speed_band_source=(unc.source if unc else "no calibration: no band")
        + (f"; widened for bonded SRAM: {bonded.uncertainty.source}" if band != _band(unc, None) else ""),
        allreduce_curve=AllReduceCurve.from_table(su.allreduce_measured.message_bytes,
                                                  su.allreduce_measured.latency_us)
        if su and su.allreduce_measured else None)


def bonded_misfit(spec: HardwareSpec, bonded: BondedSramSpec | None, layers: int) -> str | None:
    """Why ``layers`` bonded SRAM layers of ``bonded`` cannot go on ``spec`` (None: they can)."""
    if not layers:
        return None
    if spec.kind != "wafer":
        return f"bonded SRAM layers stack on wafers; '{spec.name}' is a {spec.kind}"
    if bonded is None:
        return "bonded SRAM layers requested but no bonded_sram spec given"
    if layers > bonded.max_layers:
        return f"{layers} bonded SRAM layers > max_layers {bonded.max_layers} of '{bonded.name}'"
    return None


def native_misfit(name: str, peaks: dict, weight_precision: str, mode: str) -> str | None:
    """Why precision mode ``native`` cannot run on hardware with these ``peaks`` (None: it can)."""
    cls = COMPUTE_CLASS[weight_precision]
    if mode == "native" and cls not in peaks:
        return f"{name} has no native {cls} compute (use precision mode storage or auto)"
    return None


def _band(unc, extra) -> tuple[float, float]:
    """The spec's speed band, widened to ``extra``'s where that is wider (a hypothetical option
    on measured hardware is no better known than either)."""
    lo, hi = (unc.speed_low, unc.speed_high) if unc else (1.0, 1.0)
    return (min(lo, extra.speed_low), max(hi, extra.speed_high)) if extra else (lo, hi)
