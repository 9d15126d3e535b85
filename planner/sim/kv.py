"""KV ledgers: how much KV a replica holds and may admit, one class per ``kv_policy``.

  wait     admission reserves KV for prompt + output: running sequences never run out;
  offload  as wait, against SRAM + the external tier: a reservation takes what SRAM has free
           and puts the rest off-chip for the sequence's life; every decode round reads a
           sequence's off-chip bytes over the replica's link (``offload_batching``: such a
           sequence decodes on its own at the pace its reads get, or the whole batch waits
           for them; see :class:`Offload`);
  preempt  admission reserves the prompt; KV grows in ``kv_block_tokens`` blocks; on overflow
           the youngest sequence is evicted and recomputed later (prompt + generated tokens
           are prefilled again);
  swap     as preempt, but the evicted KV crosses the off-chip link to the external tier and
           back (a transfer each way on the replica's links, sim/links.py; the replica stalls
           meanwhile).

A ledger reads the scheduler's batch (running sequences, prompts in prefill) from the replica
it serves; the scheduler asks it what admission needs, what is held, and what an eviction
costs. Agent tasks' KV kept between calls (wait/offload only) is :class:`AgentKV`'s.

A prefix every request shares (the round model's ``shared_tokens``, ``shared_bytes``: prefix
caching with a shared system prompt) is held once, by every ledger, from the start: a
sequence's own KV is that of its context past the prefix, ``kv_bytes(context - shared_tokens)``
(the engine's ``kv_full`` is already so), and only that is reserved, grown, evicted or moved.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from planner.sim.batch import largest


class AgentKV:
    """KV an agent task keeps while its tool runs (least recently parked first; evicted under
    pressure), and KV on its way out over the link (offload between turns), both held."""

    def __init__(self, replica):
        self.rep, self.rec = replica, replica.rec
        self.pinned: OrderedDict[int, float] = OrderedDict()
        self.leaving = 0.0
        self.outbound: dict[int, object] = {}  # task -> its KV's trip out (a links.Flow), for the way back

    def held(self) -> float:
        return sum(self.pinned.values()) + self.leaving if self.pinned or self.leaving else 0.0

    def kept(self, rid: int) -> float:
        """Bytes of ``rid``'s task already held (its kept prefix)."""
        return self.pinned.get(self.rec.session[rid], 0.0) if self.pinned else 0.0

    def cached(self, rid: int) -> bool:
        return self.rec.session[rid] in self.pinned

    def take(self, rid: int) -> None:
        """A call is admitted: its task's kept bytes move into the call's own reservation."""
        if self.pinned:
            self.pinned.pop(self.rec.session[rid], None)

    def victim(self, head: int) -> int | None:
        """The least recently parked task whose kept KV is not the queue head's own (None: none)."""
        if not self.pinned:
            return None
        s = self.rec.session[head]
        return next((t for t in self.pinned if t != s), None)

    def evict(self, task: int) -> None:
        del self.pinned[task]  # its next call finds no cache and prefills its whole context
        self.rec.pin_evictions += 1

    def park(self, rid: int, held: float) -> None:
        """A task's call is done: keep its context's KV for the next call, send it over the link
        (held until it has left), or free it."""
        rec, rep = self.rec, self.rep
        s = rec.session[rid]
        if s < 0 or not rec.cache_after[rid] or rec.kv_mode == "drop":
            return
        if rec.kv_mode == "keep":
            self.pinned.pop(s, None)
            self.pinned[s] = held  # most recently used last
            return
        self.leaving += held  # held until its last byte has left: the whole context's KV
        flow = self.outbound[s] = rep.net.start(rec.kv_full[rid], rep.to_tier)

        def gone(_event):
            self.leaving -= held
            if not rep.wake.triggered and rep.admissible():
                rep.wake.succeed()
        flow.done.callbacks.append(gone)


class Ledger:
    """What every policy answers the scheduler about the off-chip link (nothing, but offload)."""

    # pace is always 0 and paced does nothing: the scheduler asks neither (a prefill span need
    # not cost a decode round to ask)
    paces = False

    def detach(self, rid: int, ctx: float, remaining: int, reserved: float) -> bool:
        """True when a sequence joining the batch decodes elsewhere (offload, separate)."""
        return False

    def pace(self, t: float) -> float:
        """Seconds the link needs per round of the running batch (0: it does not wait on it),
        for rounds that take ``t`` seconds on chip."""
        return 0.0

    def paced(self, rounds: int) -> None:
        """``rounds`` rounds ran at the last pace (what crossed the link)."""


class Reserve(Ledger):
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

    def fits(self, rid: int, active: int) -> bool:
        """Admitting ``rid`` (with ``active`` sequences admitted) keeps the KV held within capacity."""
        return self.held() + self.need(rid) <= self.capacity

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



class Offload(Reserve):
    """``offload``: reservations against SRAM + the external tier. A reservation takes what
    SRAM has free (after the reservations and agents' kept KV there) and puts the rest
    off-chip, where it stays for the sequence's life. Every decode round reads a sequence's
    off-chip bytes over the replica's link (its stages' links in parallel, shared with every
    other transfer); the KV of past tokens is known before the token arrives, so reads are
    prefetched while the previous round computes, and a round takes the longer of the two.
    ``offload_batching``:

      separate  (default) a sequence with KV off-chip decodes apart from the batch, at the
                pace its reads get: one transfer of rounds x off-chip bytes, no faster than
                one round's read per on-chip round (its cap), so a lone one reads at link
                speed, n of them at 1/n each; the resident sequences are not held back. A
                scheduler that knows where each sequence's KV is has no reason to make the
                others wait, and a wafer pipeline's micro-batches let a sequence skip rounds
                whose KV has not arrived.
      together  it stays in the running batch, whose every round waits for all its members'
                reads (a stream on the link at the batch's demand, rate set at each span's
                start): what a synchronous step does (every sequence or none), and what the
                planner assumed before links were resources.

    Left out: a sequence's KV is not moved back on chip when SRAM frees up, prefill writes its
    off-chip part out unseen (out direction, overlapping the prefill), and a separate
    sequence's tokens add nothing to the batch's round time."""

    paces = True

    def __init__(self, replica):
        super().__init__(replica)
        self.capacity = self.m.kv_budget + self.m.external_bytes
        self.together = replica.offload_batching == "together"
        self.on_chip = 0.0  # reservations' bytes in SRAM
        self.placed: dict[int, tuple[float, float]] = {}  # rid -> (bytes in SRAM, bytes off-chip)
        self.streaming: set[int] = set()  # together: running sequences with KV off-chip
        self.stream, self.round_bytes = None, 0.0  # their reads' flow; bytes per round at the last pace

    def admit(self, rid: int, total: int) -> float:
        res = super().admit(rid, total)
        here = min(res, max(self.m.kv_budget - self.shared - self.on_chip - self.agents.held(), 0.0))
        self.on_chip += here
        self.placed[rid] = (here, res - here)
        return res

    def release(self, rid: int, reserved: float) -> None:
        here, _ = self.placed.pop(rid)
        self.on_chip -= here
        self.streaming.discard(rid)
        if not self.streaming and self.stream is not None:
            self.rep.net.stop(self.stream)
            self.stream = None
        super().release(rid, reserved)

    def detach(self, rid: int, ctx: float, remaining: int, reserved: float) -> bool:
        off = self.placed[rid][1]
        if off <= 0:
            return False
        if self.together:
            self.streaming.add(rid)
            return False
        rep = self.rep
        rounds = math.ceil(remaining / rep.a - 1e-9)
        t = self.m.decode(len(rep.running) + 1, ctx)[0]  # the on-chip round it rides in
        flow = rep.net.start(rounds * off, rep.from_tier, cap=off / t)
        rep.remote[rid] = rounds
        flow.done.callbacks.append(lambda _e: self._decoded(rid, rounds, reserved, flow.size))
        return True

    def _decoded(self, rid: int, rounds: int, reserved: float, nbytes: float) -> None:
        """A separate sequence's last round has read its KV: it finishes."""
        rep, rec = self.rep, self.rec
        del rep.remote[rid]
        rec.generated[rid] += math.ceil(rounds * rep.a - 1e-9)
        rec.decode_rounds[rid] += rounds
        rep.seq_rounds += rounds
        rep.xfer_bytes += nbytes
        self.release(rid, reserved)
        rep._finished(rid)
        if not rep.wake.triggered and rep.admissible():
            rep.wake.succeed()

    def pace(self, t: float) -> float:
        if not self.streaming:
            self.round_bytes = 0.0
            return 0.0
        self.round_bytes = sum(self.placed[r][1] for r in self.streaming)
        net = self.rep.net
        if self.stream is None:
            self.stream = net.start(math.inf, self.rep.from_tier, cap=self.round_bytes / t)
        else:
            net.set_cap(self.stream, self.round_bytes / t)
        return self.round_bytes / self.stream.rate

    def paced(self, rounds: int) -> None:
        self.rep.xfer_bytes += rounds * self.round_bytes


class Preempt(Ledger):
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
        return self.at(self.rep.R) + self.pending() + self.moving

    def pending(self) -> float:
        """KV reserved by prompts being prefilled or about to land."""
        return sum(p.reserved for p in self.rep.prefilling) + sum(x[2].reserved for x in self.rep.landing)

    def rounds_left(self, n: int) -> int:
        """Rounds (at most ``n``) the running batch can advance before its KV outgrows capacity."""
        cap, R = self.capacity - self.pending(), self.rep.R
        if self.at(R + n) <= cap:
            return n
        return largest(0, n, lambda k: self.at(R + k) <= cap)

    def need(self, rid: int) -> float:
        """Blocks for the next token of ``rid``'s whole context (a cached prefix and a recompute's
        generated tokens included)."""
        rec = self.rec
        return float(self.blocks(int(rec.cached[rid] + rec.prompt[rid] + rec.generated[rid]) + 1))

    def headroom(self, active: int) -> float:
        """A watermark: room for every admitted sequence to grow one more block, so an evicted
        sequence is not re-admitted straight into the space it just freed."""
        return (active + 1) * float(self.m.kv_bytes(self.block))

    def fits(self, rid: int, active: int) -> bool:
        """Admitting ``rid`` (its context and the next token) keeps the KV held, with the
        watermark, within capacity."""
        return self.held() + self.need(rid) + self.headroom(active) <= self.capacity

    def admit(self, rid: int, total: int) -> float:
        return float(self.blocks(total + 1))

    def release(self, rid: int, reserved: float) -> None:
        pass

    def transfer_bytes(self, ctx: float) -> float | None:
        """Bytes an evicted sequence's KV moves over the link each way (None: recomputed instead)."""
        return None


class Swap(Preempt):
    """``swap``: as preempt, but the evicted KV (past the shared prefix) goes over the link and comes back."""

    def transfer_bytes(self, ctx: float) -> float | None:
        return float(self.m.kv_bytes(max(ctx - self.skip, 0.0)))  # past the shared prefix


LEDGERS = {"wait": Reserve, "offload": Offload, "preempt": Preempt, "swap": Swap}
