"""Capex, power and hosting -> $/h; $/h -> what each token kind and each request costs.

$/h = capex / (years * 8760) + kW_IT * PUE * $/kWh + kW_IT * hosting $/kW-month * 12/8760,
or the rental rate. That hour's cost is the only cost. It is divided among the tokens served
in the hour (at the configured utilisation) by a stated price ratio, as API price sheets do
(output : fresh input : cached input, ``economics.price_ratio``), so that

    $/h = sum over kinds of tokens/h x $/token   (checked on every row by the tests)

and, without any ratio, as $/M blended tokens at the workload's own mix and as $/request.
The per-MW figure divides the deployment's output rate by its facility power.
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
    power_kw: float
    facility_power_kw: float
    usd_per_h: float
    capex_usd_per_h: float
    cost_usd_per_mtok_out: float  # $/h split by the price ratio: output's share per M output tokens
    cost_usd_per_mtok_in: float  # ... fresh (prefilled) input
    cost_usd_per_mtok_cached_in: float  # ... input served from a cached prefix
    cost_usd_per_mtok_blended: float  # $/h over every token served, whatever its kind
    cost_usd_per_request: float
    tok_s_per_mw: float  # output tokens/s per MW of facility power

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def usd_per_hour(dev: Device, devices: int, econ: Economics) -> tuple[int, float, float, float, float]:
    """(systems, capex, IT kW, $/h, capex $/h) of ``devices`` devices."""
    systems = math.ceil(devices / dev.devices_per_system)
    capex_each = {"spec": dev.system_capex_usd, "low": dev.system_capex_low_usd,
                  "high": dev.system_capex_high_usd}.get(econ.capex, dev.system_capex_usd)
    capex = systems * capex_each
    power_kw = systems * dev.system_power_w / 1000.0
    if econ.capex == "rental":
        if dev.system_rental_usd_per_h is None or dev.bonded_layers:
            raise Infeasible(f"no rental price for {dev.name}")
        usd_h = systems * dev.system_rental_usd_per_h
        return systems, capex, power_kw, usd_h, usd_h
    capex_h = capex / (econ.amortisation_years * HOURS_PER_YEAR)
    usd_h = capex_h + power_kw * econ.pue * econ.usd_per_kwh + power_kw * econ.hosting_usd_per_kw_month * 12 / HOURS_PER_YEAR
    return systems, capex, power_kw, usd_h, capex_h


def costs(dev: Device, devices: int, econ: Economics, out_tok_s: float, in_tok_s: float, req_s: float,
          cached_tok_s: float = 0.0, also: tuple = ()) -> Costs:
    """Costs of ``devices`` devices serving the given deployment rates (tokens/s, requests/s).
    ``also``: further pools of the same deployment as (device, devices) pairs (a disaggregated
    deployment's prefill pool): their systems, capex, power and $/h add to the first's."""
    pools = ((dev, devices),) + tuple(also)
    parts = [usd_per_hour(d, n, econ) for d, n in pools]
    systems, capex, power_kw, usd_h, capex_h = (sum(p[i] for p in parts) for i in range(5))
    low = sum(p[0] * d.system_capex_low_usd for p, (d, _) in zip(parts, pools))
    high = sum(p[0] * d.system_capex_high_usd for p, (d, _) in zip(parts, pools))
    facility_kw = power_kw * econ.pue
    served = econ.utilisation * 3600.0  # seconds of service per hour
    r = econ.price_ratio
    weighted = (r.output * out_tok_s + r.input * in_tok_s + r.cached_input * cached_tok_s) * served
    per_unit = usd_h / weighted if weighted > 0 else math.inf  # $ per fresh-input-token equivalent
    tokens = (out_tok_s + in_tok_s + cached_tok_s) * served
    requests = req_s * served
    return Costs(
        systems=systems, capex_usd=capex, capex_usd_low=low, capex_usd_high=high, power_kw=power_kw,
        facility_power_kw=facility_kw,
        usd_per_h=usd_h, capex_usd_per_h=capex_h,
        cost_usd_per_mtok_out=r.output * per_unit * 1e6, cost_usd_per_mtok_in=r.input * per_unit * 1e6,
        cost_usd_per_mtok_cached_in=r.cached_input * per_unit * 1e6,
        cost_usd_per_mtok_blended=usd_h / tokens * 1e6 if tokens > 0 else math.inf,
        cost_usd_per_request=usd_h / requests if requests > 0 else math.inf,
        tok_s_per_mw=out_tok_s / (facility_kw / 1000.0) if facility_kw > 0 else math.inf)
