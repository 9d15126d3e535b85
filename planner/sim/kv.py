"""KV ledgers: how much KV a replica holds and may admit, one class per ``kv_policy``.

  wait     admission reserves KV for prompt + output: running sequences never run out;
  offload  as wait, against SRAM + the external tier; the part above SRAM is read across the
           link every round (offloaded bytes x s/byte added to each round);
  preempt  admission reserves the prompt; KV grows in ``kv_block_tokens`` blocks; on overflow
           the youngest sequence is evicted and recomputed later (prompt + generated tokens
           are prefilled again);
  swap     as preempt, but the evicted KV crosses the off-chip link to the external tier and
           back (bytes x s/byte each way; the replica stalls meanwhile).

A ledger reads the scheduler's batch (running sequences, prompts in prefill) from the replica
it serves; the scheduler asks it what admission needs, what is held, and what an eviction
costs. Agent tasks' KV kept between calls (wait/offload only) is :class:`AgentKV`'s.

A prefix every request shares (the round model's ``shared_tokens``, ``shared_bytes``: prefix
caching with a shared system prompt) is held once, by every ledger, from the start: a
sequence's own KV is that of its context past the prefix, ``kv_bytes(context - shared_tokens)``
(the engine's ``kv_full`` is already so), and only that is reserved, grown, evicted or moved.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class AgentKV:
    """KV an agent task keeps while its tool runs (least recently parked first; evicted under
    pressure), and KV on its way out over the link (offload between turns), both held."""

    def __init__(self, replica):
        self.rep, self.rec = replica, replica.rec
        self.pinned: OrderedDict[int, float] = OrderedDict()
        self.leaving = 0.0

    def held(self) -> float:
        return sum(self.pinned.values()) + self.leaving if self.pinned or self.leaving else 0.0

    def kept(self, rid: int) -> float:
        """Bytes of ``rid``'s task already held (its kept prefix)."""
        return self.pinned.get(int(self.rec.session[rid]), 0.0)

    def cached(self, rid: int) -> bool:
        return int(self.rec.session[rid]) in self.pinned

    def take(self, rid: int) -> None:
        """A call is admitted: its task's kept bytes move into the call's own reservation."""
        self.pinned.pop(int(self.rec.session[rid]), None)

    def victim(self, head: int) -> int | None:
        """The least recently parked task whose kept KV is not the queue head's own (None: none)."""
        if not self.pinned:
            return None
        s = int(self.rec.session[head])
        return next((t for t in self.pinned if t != s), None)

    def evict(self, task: int) -> None:
        del self.pinned[task]  # its next call finds no cache and prefills its whole context
        self.rec.pin_evictions += 1

    def park(self, rid: int, held: float) -> None:
        """A task's call is done: keep its context's KV for the next call, send it over the link
        (held until it has left), or free it."""
        rec, rep = self.rec, self.rep
        s = int(rec.session[rid])
        if s < 0 or not rec.cache_after[rid] or rec.kv_mode == "drop":
            return
        if rec.kv_mode == "keep":
            self.pinned.pop(s, None)
            self.pinned[s] = held  # most recently used last
            return
        self.leaving += held

        def gone():
            yield rep.env.timeout(self.trip_s(rid))
            self.leaving -= held
            if not rep.wake.triggered and rep.admissible():
                rep.wake.succeed()
        rep.env.process(gone())

    def trip_s(self, rid: int) -> float:
        """Seconds for a call's whole-context KV to cross the off-chip link one way."""
        return self.rec.kv_full[rid] * self.rep.m.swap_s_per_byte


class Reserve:
    """``wait``: admission reserves prompt + output; nothing grows, nothing is evicted."""

    growth = False

    def __init__(self, replica):
        self.rep, self.m, self.rec = replica, replica.m, replica.rec
        self.capacity = self.m.kv_budget
        self.reserved = 0.0
        self.shared = self.m.shared_bytes  # the shared prefix, held once
        self.agents = AgentKV(replica)

    def held(self) -> float:
        return self.reserved + self.shared + self.agents.held()

    def need(self, rid: int) -> float:
        """Bytes admitting ``rid`` adds (a task's kept KV is already held: only the rest is new)."""
        return self.rec.kv_full[rid] - self.agents.kept(rid)

    def headroom(self, active: int) -> float:
        return 0.0

    def admit(self, rid: int, total: int) -> float:
        """The reservation of a call starting its prefill of ``total`` tokens."""
        res = self.rec.kv_full[rid]  # a kept prefix's bytes move into this call's reservation
        self.reserved += res
        self.agents.take(rid)
        return res

    def release(self, rid: int, reserved: float) -> None:
        """A sequence is done: its reservation is freed (or kept or sent away for its task's next call)."""
        self.reserved -= reserved
        self.agents.park(rid, reserved)

    def round_extra_s(self) -> float:
        return 0.0

    def transfer_s(self, ctx: float) -> float | None:
        return None


class Offload(Reserve):
    """``offload``: reservations against SRAM + external tier; what lies above SRAM is read
    across the link every round."""

    def __init__(self, replica):
        super().__init__(replica)
        self.capacity = self.m.kv_budget + self.m.external_bytes

    def round_extra_s(self) -> float:
        return max(self.reserved + self.shared - self.m.kv_budget, 0.0) * self.m.offload_s_per_byte


class Preempt:
    """``preempt``: KV held in whole blocks that grow as sequences decode; on overflow the
    youngest running sequence is evicted and recomputed later."""

    growth = True

    def __init__(self, replica):
        self.rep, self.m, self.rec = replica, replica.m, replica.rec
        self.capacity = self.m.kv_budget
        self.block = replica.block
        self.moving = 0.0  # blocks of sequences crossing the link (swap): held until out, taken as they come in
        self.shared, self.skip = self.m.shared_bytes, self.m.shared_tokens  # the shared prefix, held once
        self.agents = AgentKV(replica)  # stays empty: agent tasks run with wait

    def blocks(self, tokens):
        """KV bytes of whole ``kv_block_tokens`` blocks holding a sequence of ``tokens`` (scalar or
        array) past the shared prefix."""
        own = np.maximum(np.asarray(tokens, dtype=float) - self.skip, 0.0)
        return self.m.kv_bytes(np.ceil(own / self.block) * self.block)

    def at(self, R: int) -> float:
        """Allocated KV at round ``R`` of the running sequences (whole blocks) and the shared prefix:
        what grows, against what is free of prompts and transfers."""
        run = self.rep.running
        if not run:
            return self.shared
        c0 = np.fromiter((s.c0 for s in run.values()), float, len(run))
        r0 = np.fromiter((s.r0 for s in run.values()), float, len(run))
        return float(self.blocks(c0 + self.rep.a * (R - r0)).sum()) + self.shared

    def held(self) -> float:
        return self.at(self.rep.R) + self.rep.pending_kv() + self.moving

    def need(self, rid: int) -> float:
        """Blocks for the next token of ``rid``'s whole context (a cached prefix and a recompute's
        generated tokens included)."""
        rec = self.rec
        return float(self.blocks(int(rec.cached[rid] + rec.prompt[rid] + rec.generated[rid]) + 1))

    def headroom(self, active: int) -> float:
        """A watermark: room for every admitted sequence to grow one more block, so an evicted
        sequence is not re-admitted straight into the space it just freed."""
        return (active + 1) * float(self.m.kv_bytes(self.block))

    def admit(self, rid: int, total: int) -> float:
        return float(self.blocks(total + 1))

    def release(self, rid: int, reserved: float) -> None:
        pass

    def round_extra_s(self) -> float:
        return 0.0

    def transfer_s(self, ctx: float) -> float | None:
        """Seconds an evicted sequence's KV takes over the link each way (None: recomputed instead)."""
        return None


class Swap(Preempt):
    """``swap``: as preempt, but the evicted KV (past the shared prefix) goes over the link and comes back."""

    def transfer_s(self, ctx: float) -> float | None:
        return self.m.kv_bytes(max(ctx - self.skip, 0.0)) * self.m.swap_s_per_byte


LEDGERS = {"wait": Reserve, "offload": Offload, "preempt": Preempt, "swap": Swap}
