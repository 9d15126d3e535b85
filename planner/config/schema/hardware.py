"""Hardware spec files (hardware_specs/*.yaml) and the bonded-SRAM option."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from planner.config.schema.base import Bytes, BytesPerS, Confidence, Flops, Fraction, Hertz, Seconds, Sourced, Strict, Watts


class MemorySpec(Sourced):
    capacity: Bytes  # per device (wafer SRAM, GPU HBM, LPU SRAM)
    bandwidth: BytesPerS  # aggregate, per device
    efficiency: Fraction = 0.8  # achievable fraction of bandwidth in a decode step
    # fraction reached reading routed experts (grouped GEMMs over a few tokens each); None: efficiency
    expert_efficiency: Fraction | None = None
    reserve_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1  # program, activations, fragmentation


class CoreArray(Strict):
    """Dense compute from first principles: cores x SIMD lanes x FLOP per lane-cycle x clock.

    Why: a vendor "AI" peak may count sparsity; what decode and prefill can reach is the dense
    rate. The clock is rarely published, so it carries a range that feeds the uncertainty bands."""

    cores: Annotated[int, Field(ge=1, le=100_000_000)]
    simd_width: Annotated[int, Field(ge=1, le=100_000)]  # 16-bit lanes per core
    flop_per_lane: Annotated[float, Field(ge=0.01, le=1000)] = 2.0  # one fused multiply-add
    clock: Hertz
    clock_low: Hertz | None = None
    clock_high: Hertz | None = None

    @model_validator(mode="after")
    def _range(self):
        lo, hi = self.clock_low or self.clock, self.clock_high or self.clock
        if not lo <= self.clock <= hi:
            raise ValueError(f"need clock_low <= clock <= clock_high (got {lo:g}, {self.clock:g}, {hi:g})")
        return self

    @property
    def fp16_flops(self) -> float:
        return self.cores * self.simd_width * self.flop_per_lane * self.clock


class ComputeSpec(Sourced):
    """Dense peak per device, per *native* precision. A missing precision is not native.

    ``fp16`` is given directly (GPU datasheets' dense figures) or derived from ``cores``
    (wafers); ``claimed_fp16`` keeps a vendor's headline figure as a labelled claim, unused.
    ``fp8_per_fp16`` / ``fp4_per_fp16`` give native low-precision rates relative to 16-bit."""

    fp16: Flops | None = None
    fp8: Flops | None = None
    fp4: Flops | None = None
    cores: CoreArray | None = None
    claimed_fp16: Flops | None = None
    fp8_per_fp16: Annotated[float, Field(ge=0.01, le=100)] | None = None
    fp4_per_fp16: Annotated[float, Field(ge=0.01, le=100)] | None = None
    efficiency: Fraction = 0.5  # achievable fraction of peak in large matmuls (prefill)
    decode_efficiency: Fraction | None = None  # in decode-sized matmuls; None: as ``efficiency``
    # GPUs: rows (tokens in a decode step) at which a decode matmul reaches half of ``efficiency``:
    # efficiency x m / (m + decode_half_rows) (thin GEMMs fill few tensor-core tiles); set, it
    # replaces decode_efficiency
    decode_half_rows: Annotated[float, Field(gt=0, le=1e6)] | None = None
    # routed-expert (grouped) GEMMs relative to dense ones of the same phase: 1 = as dense
    expert_efficiency: Fraction = 1.0
    # achievable share of each low-precision peak relative to the 16-bit one (scaling overheads,
    # kernels less mature): the datasheet peak stays the claim, this is what the kernels reach
    fp8_achievable: Fraction = 1.0
    fp4_achievable: Fraction = 1.0
    # attention with a KV cache narrower than 16 bits, per phase: its speed-up over the 16-bit
    # rate as measured kernels reach it (at most the KV class's rate x its achievable share);
    # unset, attention runs at that class rate (README "Attention with a low-precision KV")
    low_precision_attention: dict[Literal["decode", "prefill"], Annotated[float, Field(ge=1, le=8)]] | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.fp16 is None) == (self.cores is None):
            raise ValueError("give either fp16 (a dense peak) or cores (cores x SIMD x clock), not both")
        if self.fp8 is not None and self.fp8_per_fp16 is not None:
            raise ValueError("give fp8 or fp8_per_fp16, not both")
        if self.fp4 is not None and self.fp4_per_fp16 is not None:
            raise ValueError("give fp4 or fp4_per_fp16, not both")
        return self

    def peaks(self, clock_scale: float = 1.0) -> dict[str, float]:
        """Native dense peaks, FLOP/s by compute class (``clock_scale`` for the clock range)."""
        base = (self.fp16 if self.fp16 is not None else self.cores.fp16_flops) * clock_scale
        out = {"fp16": base}
        for cls, abs_, rel in (("fp8", self.fp8, self.fp8_per_fp16), ("fp4", self.fp4, self.fp4_per_fp16)):
            if abs_ is not None:
                out[cls] = abs_ * clock_scale
            elif rel is not None:
                out[cls] = base * rel
        return out

    @property
    def clock_range(self) -> tuple[float, float]:
        """(low, high) compute scale from the clock range (1, 1 when the peak is given)."""
        if self.cores is None:
            return 1.0, 1.0
        c = self.cores
        return (c.clock_low or c.clock) / c.clock, (c.clock_high or c.clock) / c.clock


class LinkSpec(Sourced):
    """Off-device link of one device: wafer Ethernet, GPU scale-out NIC, LPU chip-to-chip."""

    bandwidth: BytesPerS
    latency: Seconds  # one hop, device to device
    # which boundaries a token pays a hop at: "devices", every device boundary (chips linked chip
    # to chip, as Groq's); "layers", at most one per layer (a layer spread over several devices
    # reaches them through a switch at once, as wafers on Ethernet)
    hops: Literal["devices", "layers"] = "layers"


class AllReduceTable(Sourced):
    """One all-reduce's time in the tensor-parallel group, measured: ``latency_us[n]`` lists the
    time for ``n`` GPUs at each of ``message_bytes`` (physics/collectives.py reads between them).

    Why a table and not latency + bytes / link bandwidth: at decode's message sizes (tens of kB to
    a few MB) an all-reduce reaches a fifth to a half of the link (one-shot and two-shot kernels,
    protocol steps), at prefill's (100 MB) nearly all of it; no single bandwidth fits both."""

    message_bytes: list[Annotated[float, Field(gt=0)]] = Field(min_length=2)
    latency_us: dict[Annotated[int, Field(ge=2, le=100_000)], list[Annotated[float, Field(gt=0)]]] = \
        Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self):
        sizes = self.message_bytes
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError("message_bytes must increase strictly")
        for n, times in self.latency_us.items():
            if len(times) != len(sizes):
                raise ValueError(f"latency_us[{n}] has {len(times)} values for {len(sizes)} message_bytes")
        return self


class ScaleUpSpec(Sourced):
    """GPU tensor-parallel domain (NVLink)."""

    domain_size: Annotated[int, Field(ge=1, le=100_000)]
    bandwidth: BytesPerS  # per GPU, one direction
    # expert-parallel load imbalance: the busiest GPU's routed-expert work over the mean
    # (routing is not uniform and tokens arrive in bursts); 1 = perfectly balanced
    ep_imbalance: Annotated[float, Field(ge=1, le=8)] = 1.0
    # measured all-reduce times (None: latency.allreduce + ring bytes / bandwidth)
    allreduce_measured: AllReduceTable | None = None


class LatencySpec(Sourced):
    """Fixed latencies of the step-time model: the handful of names calibration fits."""

    layer_base: Seconds = 0.0  # wafer: per-layer fabric latency, size-independent part
    layer_per_khidden: Seconds = 0.0  # wafer: per-layer latency per 1024 of hidden size
    # wafer: per-layer time per GB of that layer's resident weights (1 / the bandwidth a layer
    # reaches when its region does not grow with the layer: the 2024 launch software)
    layer_per_gb: Seconds = 0.0
    # GPU: fixed cost of one all-reduce in the TP group (unused with scale_up.allreduce_measured)
    allreduce: Seconds = 0.0
    # GPU: fixed cost of one all-to-all (an expert-parallel MoE layer's dispatch or combine);
    # None: the allreduce figure
    alltoall: Seconds | None = None
    # GPU: fixed time per layer per step (kernel launches, norms, rotary, synchronisation),
    # dense layers and MoE layers (+ router, top-k, grouped-GEMM set-up, permutes)
    layer_dense: Seconds = 0.0
    layer_moe: Seconds = 0.0
    # GPU: extra fixed time per layer of multi-head latent attention (MLA: DeepSeek-style), for
    # the kernels GQA does not run: the query and KV down-projections and their norms, the
    # up-projections absorbed into the attention (two batched matmuls), the latent cache write
    layer_mla: Seconds = 0.0
    step_overhead: Seconds = 0.0  # per decode/prefill step: scheduling, sampling, host
    # calibration only: what a benchmark client's TTFT holds beyond the engine's prefill (HTTP,
    # tokenisation, scheduling, streaming the first chunk) for a ``client_ttft_s`` row. The
    # planner's own TTFTs are engine times and do not include it (README "Calibration")
    client_ttft_overhead: Seconds = 0.0


class LatencyOverride(Strict):
    layer_base: Seconds | None = None
    layer_per_khidden: Seconds | None = None
    layer_per_gb: Seconds | None = None
    allreduce: Seconds | None = None
    alltoall: Seconds | None = None
    layer_dense: Seconds | None = None
    layer_moe: Seconds | None = None
    layer_mla: Seconds | None = None
    step_overhead: Seconds | None = None
    source: str | None = None


class IdlePower(Sourced):
    """What a system draws with the model's weights loaded and no work to do."""

    share: Fraction  # of the nameplate ``watts``


class LoadPower(Sourced):
    """What a system draws while working: ``share`` of the nameplate when its compute units are
    busy the whole time (prefill, large batches); a step that only streams memory at full
    bandwidth with compute idle (memory-bound decode) draws ``memory_share`` of the way from
    idle to that (README "Power")."""

    share: Fraction  # of the nameplate ``watts``
    memory_share: Annotated[float, Field(ge=0, le=1)]


class PowerSpec(Sourced):
    """Nameplate power (what a facility provisions) and, optionally, the idle and load figures
    power follows between (without them power is flat at the nameplate)."""

    watts: Watts  # nameplate per system, at the wall (before PUE)
    idle: IdlePower | None = None  # None: no published figure, the system never draws less than at load
    load: LoadPower | None = None  # None: draws the nameplate whenever it works (memory-bound or not)

    @model_validator(mode="after")
    def _idle_below_load(self):
        load = self.load.share if self.load else 1.0
        if self.idle is not None and self.idle.share > load:
            raise ValueError(f"idle.share ({self.idle.share:g}) above load.share ({load:g})")
        return self


class CostSpec(Sourced):
    capex_usd: Annotated[float, Field(gt=0, le=1e12)]  # per system
    capex_low_usd: Annotated[float, Field(gt=0, le=1e12)] | None = None
    capex_high_usd: Annotated[float, Field(gt=0, le=1e12)] | None = None
    rental_usd_per_h: Annotated[float, Field(gt=0, le=1e9)] | None = None  # per system


class ExternalMemorySpec(Sourced):
    """A memory tier outside the device (MemoryX-like DRAM for a wafer, host DRAM for a GPU),
    reached through the device's off-chip link: swap, KV offload and agents' KV between turns.

    Each device reaches the tier at ``bandwidth`` each direction (a wafer: its off-wafer I/O).
    A tier unit may serve several devices through a switch (``shared_by``); its own port then
    carries all their transfers at ``port_bandwidth`` each direction (None: no limit beyond the
    devices' links). The simulator makes links of both (sim/links.py) that concurrent
    transfers share fairly."""

    capacity: Bytes  # per device served
    bandwidth: BytesPerS  # device <-> tier transfer rate per device, each direction
    shared_by: Annotated[int, Field(ge=1, le=100_000)] = 1  # devices whose transfers share one tier unit's port
    port_bandwidth: BytesPerS | None = None  # that unit's port, each direction (None: unlimited)


class Uncertainty(Strict):
    """How far this hardware's speed predictions stray from measurements held out of the fit:
    multipliers on per-user speed and throughput (the 10th and 90th percentile of
    measured / predicted). Written by `plan calibrate --write`; hand-set for hypothetical
    hardware (with the reason in ``source``)."""

    speed_low: Annotated[float, Field(gt=0, le=1)]
    speed_high: Annotated[float, Field(ge=1, le=1000)]
    points: Annotated[int, Field(ge=0, le=1_000_000)] = 0  # held-out points behind the figures
    median_abs_error: Annotated[float, Field(ge=0, le=1000)] | None = None
    source: str = Field(min_length=3)


class HardwareSpec(Strict):
    name: str
    kind: Literal["wafer", "gpu"]
    description: str
    hypothetical: bool = False
    extends: str | None = None
    devices_per_system: Annotated[int, Field(ge=1, le=100_000)] = 1
    memory: MemorySpec
    compute: ComputeSpec
    io: LinkSpec
    scale_up: ScaleUpSpec | None = None
    latency: LatencySpec
    power: PowerSpec
    cost: CostSpec
    external_memory: ExternalMemorySpec | None = None
    software_profiles: dict[str, LatencyOverride] = {}
    uncertainty: Uncertainty | None = None

    @property
    def layout(self) -> str:
        """What tables call it: 'gpu', 'wafer', or 'sram-chip' (a wafer-kind spec whose token
        crosses every chip, ``io.hops: devices``: Groq), as ``plan calibrate`` groups them."""
        return "sram-chip" if self.kind == "wafer" and self.io.hops == "devices" else self.kind

    @model_validator(mode="after")
    def _gpu_has_scale_up(self):
        if self.kind == "gpu" and self.scale_up is None:
            raise ValueError("a gpu spec needs a scale_up section (tensor-parallel domain)")
        return self


class BondedSramSpec(Strict):
    """An SRAM wafer hybrid-bonded on top of a compute wafer (hypothetical option)."""

    name: str
    kind: Literal["bonded_sram"]
    description: str
    hypothetical: bool = True
    extends: str | None = None
    bytes_per_layer: Bytes
    bandwidth: BytesPerS  # vertical, per bonded layer
    capex_usd_per_layer: Annotated[float, Field(ge=0, le=1e12)]
    power_w_per_layer: Watts
    yield_: Fraction = Field(1.0, alias="yield")  # fraction of bonded stacks that work; cost / yield
    max_layers: Annotated[int, Field(ge=0, le=1000)] = 8
    source: str = Field(min_length=3)
    confidence: Confidence | None = None
    uncertainty: Uncertainty | None = None  # widens the wafer's band when layers are bonded
