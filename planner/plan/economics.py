"""Capex, power and hosting -> $/h; $/h -> what each token kind and each request costs.

$/h = capex / (years * 8760) + kW_energy * PUE * $/kWh + kW_nameplate * hosting $/kW-month * 12/8760,
or the rental rate. That hour's cost is the only cost. It is divided among the tokens served
in the hour (at the configured utilisation) by a stated price ratio, as API price sheets do
(output : fresh input : cached input, ``economics.price_ratio``), so that

    $/h = sum over kinds of tokens/h x $/token   (checked on every row by the tests)

and, without any ratio, as $/M blended tokens at the workload's own mix and as $/request.

Power follows load (README "Power"): a system draws its idle power plus (load - idle) x u,
u the devices' activity at the operating point (compute-busy time + memory_power_share x
memory-only time over wall time: the simulator integrates it round by round, the analytic
model takes its steady round). The energy term pays that power in the served share of the
hour and idle power in the rest; hosting is billed on the nameplate (provisioned) kW, and a
facility power cap is filled at the nameplate too, since a facility must provision for the
most its systems can draw. The per-MW figure divides the output rate by the facility power
at the operating point.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from planner.config.schema import Economics
from planner.physics.hardware import Device, Infeasible

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Costs:
    """What a deployment costs per hour, per token kind and per request, and its power."""

    systems: int
    capex_usd: float
    capex_usd_low: float
    capex_usd_high: float
    power_kw: float  # IT power at the operating point (load-following)
    power_kw_nameplate: float  # IT power the systems are rated for: what a facility provisions
    facility_power_kw: float  # power_kw x PUE
    activity: float  # u in power = idle + (load - idle) x u
    power_source: str
    usd_per_h: float
    capex_usd_per_h: float
    cost_usd_per_mtok_out: float  # $/h split by the price ratio: output's share per M output tokens
    cost_usd_per_mtok_in: float  # ... fresh (prefilled) input
    cost_usd_per_mtok_cached_in: float  # ... input served from a cached prefix
    cost_usd_per_mtok_blended: float  # $/h over every token served, whatever its kind
    cost_usd_per_request: float
    tok_s_per_mw: float  # output tokens/s per MW of facility power at the operating point

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Power:
    """IT power of some devices at the wall (before PUE), kW."""

    systems: int
    kw: float  # at the activity asked for
    idle_kw: float  # the same systems with nothing to do
    nameplate_kw: float


def power(dev: Device, devices: float, activity: float) -> Power:
    """Every system provisioned draws its idle power; the devices at work add their share of
    (load - idle) x ``activity`` (a system's unused devices stay idle)."""
    systems = math.ceil(devices / dev.devices_per_system)
    idle = systems * dev.system_idle_w / 1000.0
    work = devices / dev.devices_per_system * (dev.system_load_w - dev.system_idle_w) / 1000.0
    return Power(systems, idle + work * activity, idle, systems * dev.system_power_w / 1000.0)


def usd_per_hour(dev: Device, devices: int, econ: Economics, activity: float) -> tuple[Power, float, float, float]:
    """(power, capex, $/h, capex $/h) of ``devices`` devices working at ``activity``."""
    p = power(dev, devices, activity)
    capex_each = {"spec": dev.system_capex_usd, "low": dev.system_capex_low_usd,
                  "high": dev.system_capex_high_usd}.get(econ.capex, dev.system_capex_usd)
    capex = p.systems * capex_each
    if econ.capex == "rental":
        if dev.system_rental_usd_per_h is None or dev.bonded_layers:
            raise Infeasible(f"no rental price for {dev.name}")
        usd_h = p.systems * dev.system_rental_usd_per_h
        return p, capex, usd_h, usd_h
    capex_h = capex / (econ.amortisation_years * HOURS_PER_YEAR)
    energy_kw = econ.utilisation * p.kw + (1.0 - econ.utilisation) * p.idle_kw  # idle in the hours it does not serve
    usd_h = capex_h + energy_kw * econ.pue * econ.usd_per_kwh \
        + p.nameplate_kw * econ.hosting_usd_per_kw_month * 12 / HOURS_PER_YEAR
    return p, capex, usd_h, capex_h


def costs(dev: Device, devices: int, econ: Economics, out_tok_s: float, in_tok_s: float, req_s: float,
          cached_tok_s: float = 0.0, *, activity: float) -> Costs:
    """Costs of ``devices`` devices serving the given deployment rates (tokens/s, requests/s) at
    power ``activity`` u (0: idle, 1: compute busy the whole time)."""
    p, capex, usd_h, capex_h = usd_per_hour(dev, devices, econ, activity)
    facility_kw = p.kw * econ.pue
    served = econ.utilisation * 3600.0  # seconds of service per hour
    r = econ.price_ratio
    weighted = (r.output * out_tok_s + r.input * in_tok_s + r.cached_input * cached_tok_s) * served
    per_unit = usd_h / weighted if weighted > 0 else math.inf  # $ per fresh-input-token equivalent
    tokens = (out_tok_s + in_tok_s + cached_tok_s) * served
    requests = req_s * served
    return Costs(
        systems=p.systems, capex_usd=capex, capex_usd_low=p.systems * dev.system_capex_low_usd,
        capex_usd_high=p.systems * dev.system_capex_high_usd, power_kw=p.kw, power_kw_nameplate=p.nameplate_kw,
        facility_power_kw=facility_kw, activity=activity, power_source=dev.power_source,
        usd_per_h=usd_h, capex_usd_per_h=capex_h,
        cost_usd_per_mtok_out=r.output * per_unit * 1e6, cost_usd_per_mtok_in=r.input * per_unit * 1e6,
        cost_usd_per_mtok_cached_in=r.cached_input * per_unit * 1e6,
        cost_usd_per_mtok_blended=usd_h / tokens * 1e6 if tokens > 0 else math.inf,
        cost_usd_per_request=usd_h / requests if requests > 0 else math.inf,
        tok_s_per_mw=out_tok_s / (facility_kw / 1000.0) if facility_kw > 0 else math.inf)


@dataclass(frozen=True)
class PowerCap:
    """The deployment a facility power cap holds: as many replicas as fit at nameplate power
    x PUE, each at this point's operating load."""

    cap_replicas: int
    cap_devices: int
    cap_out_tok_s: float  # output tok/s of those replicas
    cap_facility_mw: float  # what they draw at the operating point (PUE included), <= the cap
    cap_lower_bound: bool  # the capacity search stopped at the target load: a replica may carry more


def power_cap(dev: Device, devices_per_replica: int, econ: Economics, out_tok_s_per_replica: float,
              activity: float, lower_bound: bool = False) -> PowerCap | None:
    """Replicas whose provisioned (nameplate x PUE) power fits in ``economics.facility_power_cap``:
    n = floor(floor(cap / (system nameplate x PUE)) x devices per system / devices per replica)
    (whole systems; a replica may span systems). None without a cap (or a rating)."""
    if econ.facility_power_cap is None or dev.system_power_w <= 0:
        return None
    systems = math.floor(econ.facility_power_cap / (dev.system_power_w * econ.pue) * (1 + 1e-12))
    replicas = systems * dev.devices_per_system // devices_per_replica
    devices = replicas * devices_per_replica
    drawn = power(dev, devices, activity).kw * econ.pue / 1000.0 if devices else 0.0
    return PowerCap(cap_replicas=replicas, cap_devices=devices, cap_out_tok_s=replicas * out_tok_s_per_replica,
                    cap_facility_mw=drawn, cap_lower_bound=lower_bound)
