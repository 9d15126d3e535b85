"""Capex, power and hosting -> $/h, $/M tokens, tokens/s per MW.

$/h = capex / (years * 8760) + kW_IT * PUE * $/kWh + kW_IT * hosting $/kW-month * 12/8760,
or the rental rate. Token costs divide $/h by the tokens served in that hour at the
configured utilisation. Input tokens are charged their share of the round time (the
prefill share); on a latency-bound wafer, prefill fills pipeline bubbles and costs ~0.
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
    """What a deployment costs per hour and per token, and its power."""

    systems: int
    capex_usd: float
    capex_usd_low: float
    capex_usd_high: float
    power_kw: float
    facility_power_kw: float
    usd_per_h: float
    capex_usd_per_h: float
    cost_usd_per_mtok_out: float
    cost_usd_per_mtok_in: float
    cost_usd_per_mtok_total: float
    tok_s_per_mw: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def costs(dev: Device, devices: int, econ: Economics, out_tok_s: float, in_tok_s: float,
          prefill_share: float) -> Costs:
    systems = math.ceil(devices / dev.devices_per_system)
    capex_each = {"spec": dev.system_capex_usd, "low": dev.system_capex_low_usd,
                  "high": dev.system_capex_high_usd}.get(econ.capex, dev.system_capex_usd)
    capex = systems * capex_each
    power_kw = systems * dev.system_power_w / 1000.0
    facility_kw = power_kw * econ.pue
    if econ.capex == "rental":
        if dev.system_rental_usd_per_h is None or dev.bonded_layers:
            raise Infeasible(f"no rental price for {dev.name}")
        usd_h = systems * dev.system_rental_usd_per_h
        capex_h = usd_h
    else:
        capex_h = capex / (econ.amortisation_years * HOURS_PER_YEAR)
        usd_h = capex_h + facility_kw * econ.usd_per_kwh + power_kw * econ.hosting_usd_per_kw_month * 12 / HOURS_PER_YEAR
    served = econ.utilisation * 3600.0
    out_m = out_tok_s * served / 1e6
    in_m = in_tok_s * served / 1e6
    share = min(max(prefill_share, 0.0), 1.0)
    return Costs(
        systems=systems, capex_usd=capex, capex_usd_low=systems * dev.system_capex_low_usd,
        capex_usd_high=systems * dev.system_capex_high_usd, power_kw=power_kw, facility_power_kw=facility_kw,
        usd_per_h=usd_h, capex_usd_per_h=capex_h,
        cost_usd_per_mtok_out=usd_h * (1 - share) / out_m if out_m > 0 else math.inf,
        cost_usd_per_mtok_in=usd_h * share / in_m if in_m > 0 else 0.0,
        cost_usd_per_mtok_total=usd_h / (out_m + in_m) if out_m + in_m > 0 else math.inf,
        tok_s_per_mw=out_tok_s / (facility_kw / 1000.0) if facility_kw > 0 else math.inf)
