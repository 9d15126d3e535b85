"""What a simulated replica needs to know about its hardware: round times and KV bytes.

``StepRounds`` wraps the analytic step model (perf.StepModel): the simulator and
``plan estimate`` share one source of truth. Decode rounds are memoised on a grid (batch
exact up to 64, then 64 points per doubling; context in buckets of 1/64 of the sizing
context) and interpolated bilinearly, so a run touches the roofline a few hundred times,
not once per round. Rounds with prefill are memoised on (batch grid point, context bucket,
chunk tokens rounded up to a GRANULE, chunk start rounded down to a bucket); ``mixed_run`` sums a run
of such rounds with one lookup per start bucket. ``ConstantRounds`` is a replica whose
round time ignores batch and context: with it, a replica is an exact c-server queue,
which is what the queueing-theory tests need.
"""
from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from planner.physics.point import Built
from planner.sim.batch import count, floor_sum


class RoundModel(Protocol):
    """What a replica asks of its hardware (StepRounds for the step-time model, ConstantRounds
    for queueing-theory tests). Times in seconds, KV in bytes, per replica."""

    accepted: float  # tokens a sequence gains per decode round (speculative decoding: > 1)
    stages: int  # pipeline stages (busy and active time are reported per stage)
    kv_budget: float  # KV bytes the replica holds on-chip (its tightest stage sets it), a shared prefix included
    shared_tokens: int  # a prefix every request shares (prefix caching), its KV held once per replica ...
    shared_bytes: float  # ... taking this many bytes of kv_budget
    external_bytes: float  # KV bytes of the external tier (offload)
    share: np.ndarray  # each stage's share of a sequence's KV
    stage_budget: np.ndarray  # each stage's KV bytes
    link_bytes_per_s: float  # the replica's off-chip KV path, each direction (its stages' links in parallel)
    tier_bytes_per_s: float  # the external tier's port serving it, each direction (math.inf: no limit)
    replicas_per_tier: int  # replicas whose transfers share one tier port
    q: float  # context bucket width (tokens): prefill_budget and mixed see the context only through it

    def kv_bytes(self, ctx): ...  # KV of one sequence at ``ctx`` tokens (scalar or array)

    def decode(self, b: int, ctx: float) -> tuple[float, np.ndarray, float]: ...  # round, stage busy, link busy
    # (stage busy: a 2 x stages array, busy seconds over active seconds, see ``stage_time``)

    def prefill_budget(self, b: int, ctx: float, chunk: int) -> int: ...  # prefill tokens the next round takes

    def mixed(self, b: int, ctx: float, tokens: int, start: int, chunk: int) -> tuple: ...  # a round with prefill

    def mixed_run(self, b: int, ctx: float, tokens: int, start: int, k: int, chunk: int,
                  busy: dict) -> tuple: ...  # k of them

    def idle_ttft(self, total: int, cached: int, chunk: int) -> float: ...  # prefill alone on the replica


# Prefill tokens per round are costed in whole granules (memo keys). 16, not 64 (before
# 2026-11-30): a bubble that holds 119 tokens was floored to 64, so a saturated 4 x CS-3
# Llama-70B replica (1,024/256) prefilled at half the rate its bubbles allow and carried
# 108.8 req/s against 211 analytic, stages idle half the time while prompts queued.
GRANULE = 16
ROUND_BY_ROUND = 16  # runs up to this many rounds are summed round by round (cheaper than the closed form)


def stage_time(r) -> np.ndarray:
    """A round's per-stage time as the replicas sum it: busy seconds (row 0, utilisation) over
    power-weighted active seconds (row 1, README "Power")."""
    return rows2(r.stage_busy_s, r.stage_active_s)


def rows2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.stack([a, b]) for two 1-D arrays of one length, without its generic checks (a memo
    miss of the round model makes one)."""
    out = np.empty((2, len(a)))
    out[0], out[1] = a, b
    return out


def _peak(link_busy: np.ndarray) -> float:
    return float(np.maximum.reduce(link_busy)) if len(link_busy) else 0.0


class StepRounds:
    def __init__(self, built: Built, external_bytes_per_device: float = 0.0, external_bw: float = 0.0,
                 tier_shared_by: int = 1, tier_port_bw: float | None = None):
        self.sm, pl, dev, shape = built.steps, built.placement, built.device, built.shape
        self.accepted = self.sm.accepted
        self.stages = len(pl.stages)
        self.q = max(16.0, pl.context / 64.0)  # context bucket width, tokens
        self._dec: dict = {}
        self._lines: dict = {}  # (batch, context bucket) -> what decode interpolates (_line)
        self._mix: dict = {}
        self._budget: dict = {}
        self._budget_of, self._row_of = {}, {}  # _budget and _rows by exact batch (not grid point)
        self.wafer = self.sm.dev.kind == "wafer"
        # data-parallel attention: the busiest GPU's step jumps where the batch passes a multiple
        # of the group (ceil(b/k) sequences each), so the grid breaks there too
        self._dp_k = int(self.sm.k.max()) if self.sm.dp_attention else 0
        self._rows: dict = {}  # (batch grid point, context bucket, tokens) -> {position bucket: mixed round}
        self._chunk: dict = {}  # (chunk tokens, start) -> one chunk's (cycle, pass) on an idle pipeline
        self._idle: dict = {}  # (tokens, cached, chunk) -> a prompt's TTFT on an idle replica
        # KV bytes one sequence holds (ModelShape.held_tokens, summed over layers) in closed form
        # for arrays of contexts: global layers grow with context, windowed ones stop at w
        kv_tok = self.sm.kv_tok * pl.kv_replication
        local = shape.window > 0
        if len(set(shape.window[local].tolist())) > 1:
            raise NotImplementedError(f"{shape.spec.name}: windowed layers with different windows")
        self.kv_global = float(kv_tok[~local].sum())
        self.kv_local = float(kv_tok[local].sum())
        self.window = float(shape.window[local].max()) if local.any() else 0.0
        # capacity: the tightest stage sets how much KV the replica holds in total; a shared prefix
        # takes its own bytes on each stage and is held once, the sequences share the rest
        per_seq = np.array([s.kv_bytes_per_seq for s in pl.stages]) * pl.kv_replication
        self.share = per_seq / per_seq.sum()
        stage_budget = np.array([s.devices * pl.capacity_bytes - s.weight_bytes for s in pl.stages])
        self.stage_budget = stage_budget
        self.shared_tokens, self.shared_bytes = pl.shared_tokens, pl.shared_kv_bytes
        shared = np.array([s.shared_kv_bytes for s in pl.stages])
        self.kv_budget = float(np.min((stage_budget - shared) / self.share)) + self.shared_bytes
        devs = np.array([s.devices for s in pl.stages], dtype=float)
        self.external_bytes = external_bytes_per_device * pl.devices
        link = external_bw or dev.io_bw_bytes_per_s
        # a sequence's KV is spread over the stages by ``share``, each stage's part on its own
        # devices' links at once: every KV transfer loads the stages' links in the same
        # proportion, so together they act as one link as fast as the busiest stage allows
        self.link_bytes_per_s = link / float(np.max(self.share / devs))
        # a tier unit serving ``tier_shared_by`` devices: a port per group of whole replicas (its
        # capacity pro rata when the unit's devices are not whole replicas)
        self.replicas_per_tier = max(1, tier_shared_by // pl.devices)
        self.tier_bytes_per_s = (tier_port_bw * self.replicas_per_tier * pl.devices / tier_shared_by
                                 if tier_port_bw else math.inf)

    def kv_bytes(self, ctx):
        """KV bytes of one sequence at ``ctx`` tokens (scalar or array)."""
        return self.kv_global * ctx + self.kv_local * np.minimum(ctx, self.window)

    def _decode_at(self, b: int, k: int):
        key = (b, k)
        hit = self._dec.get(key)
        if hit is None:
            r = self.sm.decode_round(b, max(k * self.q, 1.0), attribution=False)
            hit = self._dec[key] = (r.round_s, stage_time(r), _peak(r.link_busy_s))
        return hit

    def _grid(self, b: int) -> tuple[int, int]:
        """Batch grid points around ``b``: exact up to 64, then steps of 1/64 of the octave, never
        across a step of data-parallel attention (batches with the same ceil(b/k))."""
        if b <= 64:
            return b, b
        step = 1 << (b.bit_length() - 7)
        lo = b // step * step
        hi = lo + step
        k = self._dp_k
        if k:
            lo, hi = max(lo, (b - 1) // k * k + 1), min(hi, -(-b // k) * k)
        return lo, hi

    def decode(self, b: int, ctx: float):
        """(round seconds, stage busy seconds, busiest link's seconds) for ``b`` sequences at mean ``ctx``."""
        x = ctx / self.q
        k = int(x)
        f = x - k
        hit = self._lines.get((b, k))
        if hit is None:
            hit = self._lines[(b, k)] = self._line(b, k)
        lo, slope, busy, link, other = hit
        t = lo + slope * f
        if other is not None:  # b between two grid points: interpolated between them too
            t += (other[0] + other[1] * f - t) * other[2] / other[3]
        return t, busy, link

    def _line(self, b: int, k: int):
        """decode's line for ``b`` in bucket ``k``: time at the bucket's start, rise to the next."""
        b0, b1 = self._grid(b)
        lo, hi = self._decode_at(b0, k), self._decode_at(b0, k + 1)
        other = None
        if b1 != b0:
            lo1, hi1 = self._decode_at(b1, k), self._decode_at(b1, k + 1)
            other = (lo1[0], hi1[0] - lo1[0], b - b0, b1 - b0)
        return lo[0], hi[0] - lo[0], lo[1], lo[2], other

    def prefill_budget(self, b: int, ctx: float, chunk: int) -> int:
        """Prefill tokens the next round takes. GPU steps are synchronous: one chunk. A wafer
        pipeline fills its bubbles: as many tokens as the slack between the token latency and
        the busiest stage's cycle absorbs without stretching the round (whole GRANULEs, at
        least one, at most one chunk per stage)."""
        if not self.wafer:
            return chunk
        if b == 0:
            return chunk * self.stages
        key = (b, int(ctx / self.q), chunk)
        hit = self._budget_of.get(key)
        if hit is None:
            hit = self._budget_of[key] = self._budget_at(self._grid(b)[0], key[1], chunk)
        return hit

    def _budget_at(self, b: int, k: int, chunk: int) -> int:
        """prefill_budget at batch grid point ``b`` and context bucket ``k``."""
        key = (b, k, chunk)
        hit = self._budget.get(key)
        if hit is None:
            r = self.sm.decode_round(b, max(k * self.q, 1.0), attribution=False)
            per_token = float(self.sm.prefill(chunk, k * self.q / 2).occupancy_s.max()) / chunk
            slack = max(r.token_latency_s - r.cycle_s, 0.0)
            cap = chunk * self.stages  # (rounding down must not reach 0: a livelock)
            g = GRANULE
            hit = self._budget[key] = max(int(min(max(slack / per_token, g), cap)) // g * g, min(cap, g))
        return hit

    def mixed(self, b: int, ctx: float, tokens: int, start: int, chunk: int):
        """A round that also prefills ``tokens`` prompt tokens from position ``start``:
        (round seconds, stage busy, link busy, pass, cycle) where pass/cycle are one chunk's
        trip through the pipeline and the gap before the next chunk can follow it."""
        b = self._grid(b)[0]
        tokens = -(-tokens // GRANULE) * GRANULE
        start = int(start // self.q * self.q)
        key = (b, int(ctx / self.q), tokens, start)
        hit = self._mix.get(key)
        if hit is None:
            # the round's prefill is costed as chunk-sized pieces at the head prompt's position,
            # not as one long sequence (attention is quadratic within a sequence only)
            one = min(tokens, chunk)
            cycle, passing = self._chunk.get((one, start)) or self._chunk.setdefault(
                (one, start), self.sm.prefill_round(one, start))  # batch and context do not enter it
            if b == 0:  # nothing decodes: the next chunk follows once the busiest stage is free
                t = self.sm.prefill(one, start, tokens / one)
                dur = float(t.occupancy_s.max())
                hit = (dur, rows2(t.occupancy_s, t.active_s), 0.0, passing, cycle)
            else:
                r = self.sm.decode_round(b, max(key[1] * self.q, 1.0), tokens, one, start, attribution=False)
                hit = (r.round_s, stage_time(r), _peak(r.link_busy_s), passing, cycle)
            self._mix[key] = hit
        return hit

    def idle_ttft(self, total: int, cached: int, chunk: int) -> float:
        """The prompt's prefill alone on the replica (StepModel.ttft_s): no piece of it can land
        sooner after its first piece went in, whatever the load (pieces only share the stages)."""
        key = (total, cached, chunk)
        hit = self._idle.get(key)
        if hit is None:
            hit = self._idle[key] = self.sm.ttft_s(total - cached, cached, chunk)
        return hit

    def _row_entry(self, row: dict, b: int, ctx: float, tokens: int, hp: int, chunk: int):
        """mixed at position ``hp`` as ``row`` keeps it (under the bucket mixed puts ``hp`` in)."""
        r = self.mixed(b, ctx, tokens, hp, chunk)
        hit = row[hp // self.q] = (r[0], r[1], r[2], float(np.add.reduce(r[1][0])), float(np.add.reduce(r[1][1])))
        return hit

    def mixed_run(self, b: int, ctx: float, tokens: int, start: int, k: int, chunk: int, busy: dict):
        """Sums over ``k`` rounds that each prefill ``tokens`` more of one prompt from ``start``,
        at one batch and context bucket: (round seconds, link busy); each round's stage-busy
        vector is counted in ``busy`` (batch.count). The rounds' memo entries differ only in the
        position's bucket i = floor(position / q): a run inside one bucket is one lookup times its
        length, and where the entries are linear in i (checked at a middle round, to 1e-9) the
        sum over rounds is closed form, sum_j i_j being a floor sum; elsewhere (a kink: a stage
        turning compute-bound, say) the run is halved. The same sum as round by round up to
        the order of additions, from a few lookups whatever ``k``."""
        q = self.q
        key = (b, int(ctx / q), tokens)
        row = self._row_of.get(key)
        if row is None:
            grid = (self._grid(b)[0], key[1], -(-tokens // GRANULE) * GRANULE)
            row = self._row_of[key] = self._rows.setdefault(grid, {})
        if k == 1:  # (the commonest run: one round)
            hit = row.get(start // q) or self._row_entry(row, b, ctx, tokens, start, chunk)
            count(busy, hit[1], 1)
            return hit[0], hit[2]
        t = link = 0.0
        if k <= ROUND_BY_ROUND or q != int(q):  # a short run: round by round, a bucket's rounds at once
            last, n, hp, get = None, 0, start, row.get
            for _ in range(k):
                hit = get(hp // q)
                if hit is None:
                    hit = self._row_entry(row, b, ctx, tokens, hp, chunk)
                if hit is not last:
                    if last is not None:  # count(busy, last[1], n), inline: the loop's hottest line
                        c = busy.get(id(last[1]))
                        if c is None:
                            busy[id(last[1])] = [last[1], n]
                        else:
                            c[1] += n
                    last, n = hit, 0
                t, link, n = t + hit[0], link + hit[2], n + 1
                hp += tokens
            count(busy, last[1], n)
            return t, link

        def entry(j: int):
            hp = start + j * tokens
            i = hp // q
            hit = row.get(i)
            return i, self._row_entry(row, b, ctx, tokens, hp, chunk) if hit is None else hit

        stack = [(0, k - 1, *entry(0), *entry(k - 1))]
        while stack:
            j0, j1, i0, e0, i1, e1 = stack.pop()
            n = j1 - j0 + 1
            if i0 == i1:  # one bucket
                t, link = t + n * e0[0], link + n * e0[2]
                count(busy, e0[1], n)
                continue
            if n == 2:
                t, link = t + e0[0] + e1[0], link + e0[2] + e1[2]
                count(busy, e0[1], 1)
                count(busy, e1[1], 1)
                continue
            jm = (j0 + j1) // 2
            im, em = entry(jm)
            f = (im - i0) / (i1 - i0)
            # two buckets are a line; else a bucket strictly between must lie on the chord (the
            # entries are convex in the position, so then they are linear all along)
            if i1 - i0 == 1 or (0 < f < 1 and abs(em[0] - e0[0] - (e1[0] - e0[0]) * f) <= 1e-9 * em[0]
                                and abs(em[2] - e0[2] - (e1[2] - e0[2]) * f) <= 1e-9 * em[2]
                                and abs(em[3] - e0[3] - (e1[3] - e0[3]) * f) <= 1e-9 * em[3]
                                and abs(em[4] - e0[4] - (e1[4] - e0[4]) * f) <= 1e-9 * em[4]):
                w = (floor_sum(n, int(q), tokens, start + j0 * tokens) - n * int(i0)) / (i1 - i0)
                t += n * e0[0] + (e1[0] - e0[0]) * w
                link += n * e0[2] + (e1[2] - e0[2]) * w
                count(busy, e0[1], n - w)
                count(busy, e1[1], w)
            elif n == 3:
                t, link = t + e0[0] + em[0] + e1[0], link + e0[2] + em[2] + e1[2]
                for hit in (e0, em, e1):
                    count(busy, hit[1], 1)
            else:
                stack += [(j0, jm, i0, e0, im, em), (jm + 1, j1, *entry(jm + 1), i1, e1)]
        return t, link


class ConstantRounds:
    """Every round takes ``tau`` seconds whatever the batch; KV costs ``kv_per_token`` bytes."""

    def __init__(self, tau: float, kv_budget: float = math.inf, kv_per_token: float = 0.0,
                 external_bytes: float = 0.0, link_bw: float = 1e9, tier_bw: float = math.inf,
                 replicas_per_tier: int = 1, shared_tokens: int = 0):
        self.tau, self.accepted, self.stages = tau, 1.0, 1
        self.shared_tokens, self.shared_bytes = shared_tokens, kv_per_token * shared_tokens
        self.q = math.inf  # round times do not depend on the context
        self.kv_global, self.kv_local, self.window = kv_per_token, 0.0, 0.0
        self.kv_budget, self.external_bytes = kv_budget, external_bytes
        self.share = np.ones(1)
        self.stage_budget = np.array([kv_budget])
        self.link_bytes_per_s = link_bw
        self.tier_bytes_per_s, self.replicas_per_tier = tier_bw, replicas_per_tier
        self._busy = np.array([[tau], [tau]])  # busy the whole round, at full load
        self._link = 0.0

    def kv_bytes(self, ctx):
        return self.kv_global * ctx

    def decode(self, b: int, ctx: float):
        return self.tau, self._busy, self._link

    def prefill_budget(self, b: int, ctx: float, chunk: int) -> int:
        return chunk

    def mixed(self, b: int, ctx: float, tokens: int, start: int, chunk: int):
        return self.tau, self._busy, self._link, self.tau, 0.0

    def mixed_run(self, b: int, ctx: float, tokens: int, start: int, k: int, chunk: int, busy: dict):
        count(busy, self._busy, k)
        return k * self.tau, k * self._link

    def idle_ttft(self, total: int, cached: int, chunk: int) -> float:
        return math.ceil((total - cached) / chunk) * self.tau  # one round per chunk
