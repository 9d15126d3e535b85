"""The cost-vs-speed frontier of one configuration: from one user to the most sequences that
fit, what per-user speed, per-device throughput and $/M tokens each load gives.

Placed by the analytic model (closed-form steady rounds at each batch, an idle replica's
TTFT: no queueing), so a point's whole curve costs ~16 estimates; the simulated capacity at
the SLO (results.csv) is the one point of it where queueing is modelled. More load never
raises per-user speed here (a test checks it), so the curve is a frontier as it stands.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from planner.config.schema import Economics
from planner.physics.point import Built, Config
from planner.plan.economics import costs
from planner.plan.estimate import estimate

LOADS = 16  # batches per curve, geometric from 1 to the most that fit


@dataclass(frozen=True)
class FrontierPoint:
    batch_per_replica: int
    decode_tok_s_per_user: float
    decode_tok_s_per_user_low: float
    decode_tok_s_per_user_high: float
    tok_s_per_device: float
    throughput_out_tok_s_per_replica: float
    ttft_idle_s: float
    cost_usd_per_mtok_out: float
    cost_usd_per_mtok_out_low: float
    cost_usd_per_mtok_out_high: float
    cost_usd_per_mtok_blended: float
    power_kw_per_replica: float
    source: str = "analytic"


def batches(max_batch: int, n: int = LOADS) -> list[int]:
    """Distinct batches from 1 to ``max_batch``, about evenly spaced in log."""
    return sorted({int(round(x)) for x in np.geomspace(1, max(max_batch, 1), n)})


def frontier(cfg: Config, built: Built, econ: Economics, max_batch: int) -> tuple[FrontierPoint, ...]:
    """The curve of one replica; costs at its own devices, bands as in results.csv."""
    out = []
    cheap = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "low"})
    dear = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "high"})
    for b in batches(max_batch):
        e = estimate(dataclasses.replace(cfg, batch=b), built)
        if not e.fits:
            break
        req = e.aggregate_tok_s / max(cfg.output, 1)
        lo, hi = e.speed_band_low, e.speed_band_high
        u = e.activity  # power follows the load along the curve
        rates = (e.aggregate_tok_s, e.input_tok_s, req, e.cached_input_tok_s)
        c = costs(built.device, e.devices, econ, *rates, activity=u)
        c_lo = costs(built.device, e.devices, cheap, *(x * hi for x in rates), activity=u)
        c_hi = costs(built.device, e.devices, dear, *(x * lo for x in rates), activity=u)
        out.append(FrontierPoint(
            batch_per_replica=b, decode_tok_s_per_user=e.decode_tok_s_per_user,
            decode_tok_s_per_user_low=e.decode_tok_s_per_user * lo,
            decode_tok_s_per_user_high=e.decode_tok_s_per_user * hi,
            tok_s_per_device=e.aggregate_tok_s / e.devices, throughput_out_tok_s_per_replica=e.aggregate_tok_s,
            ttft_idle_s=e.ttft_s, cost_usd_per_mtok_out=c.cost_usd_per_mtok_out,
            cost_usd_per_mtok_out_low=c_lo.cost_usd_per_mtok_out,
            cost_usd_per_mtok_out_high=c_hi.cost_usd_per_mtok_out,
            cost_usd_per_mtok_blended=c.cost_usd_per_mtok_blended, power_kw_per_replica=c.power_kw))
    return tuple(out)
