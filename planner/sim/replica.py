"""One replica: a continuous-batching scheduler over a pipeline (or GPU group), with KV residency.

Event flow (SimPy process ``run``):
  admit from the swapped list, then the queue, while KV and ``max_batch`` allow;
  if prompts are being prefilled: a *prefill span* (rounds that decode the running batch and
  prefill up to a budget of prompt tokens each; the head prompt's full-budget rounds summed in
  closed form, batch.head_rounds); a prompt's last chunk *lands* (first token out, sequence
  joins the batch) one pipeline pass after it entered, which on a deep pipeline is several
  rounds later;
  else a *decode span*: rounds until the next finish, landing or KV overflow, advanced in
  closed form; an arrival that could be admitted interrupts the span at the next round boundary.
Sequences do not store a growing context: a sequence joined at round ``r0`` with context
``c0`` has ``c0 + a (R - r0)`` tokens at round ``R`` (``a`` accepted tokens per round), and its
finish round is fixed when it joins, so the running batch only changes at events.

KV policies (``kv_policy``): sim/kv.py, one ledger class each.
"""
from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from planner.sim.accounts import Accounts
from planner.sim.batch import Prefill, Seq, count, head_rounds, rounds_within, span_time
from planner.sim.kv import LEDGERS
from planner.sim.rounds import RoundModel
from planner.sim.watch import WATCH


class Replica(Accounts):
    """One replica's scheduler (see the module docstring); ``rounds`` is its hardware."""

    exact_prefill = False  # True: prefill spans summed round by round (the reference for head_rounds)

    def __init__(self, env, index: int, rounds: RoundModel, recorder, policy: str, max_batch: int | None,
                 chunk: int, block_tokens: int, offload_batching: str = "separate"):
        self.env, self.index, self.m, self.rec = env, index, rounds, recorder
        self.policy, self.max_batch, self.chunk, self.block = policy, max_batch or 10 ** 9, chunk, block_tokens
        self.offload_batching = offload_batching
        self.a = rounds.accepted
        self.queue: deque[int] = deque()
        self.prefilling: deque[Prefill] = deque()
        self.landing: list[tuple[float, int, Prefill]] = []  # (time its first token is out, rid, prefill)
        self.running: dict[int, Seq] = {}
        self.heap: list[tuple[int, int]] = []
        self.swapped: deque[tuple[int, float, int]] = deque()  # (rid, context, generated)
        self.in_transit: set[int] = set()  # KV crossing the link (swap out or in) right now
        self.remote: dict[int, int] = {}  # sequences decoding apart at their reads' pace (offload): rid -> rounds
        self.R = 0
        self.sum_c0 = 0.0  # sum over running of (c0 - a r0): sum of contexts = sum_c0 + a B R
        self.kv = LEDGERS[policy](self)
        self.capacity = self.kv.capacity
        self.wake = env.event()
        self.seq_rounds = 0  # sequence-rounds this replica ran (conservation check vs the requests)
        self.prefilled = 0  # prompt tokens this replica prefilled (conservation check: fresh + recomputed)
        self._busy = np.zeros((2, rounds.stages))  # per stage: busy seconds over active seconds
        self._busy_n: dict[int, list] = {}  # id(memoised stage-busy vector) -> [vector, rounds] (batch.count)
        self.link_busy = 0.0  # busiest inter-stage link's seconds
        self.xfer_bytes = 0.0  # KV bytes moved over the off-chip link (swap, offload, agents' trips)
        self.net, self.to_tier, self.from_tier = None, (), ()  # its off-chip links (engine.wire)
        self.kv_area = self.kv_peak = self.last_kv = 0.0  # integral of KV bytes over time, peak, last sampled
        self.n_out, self.pool = 0, None  # requests outstanding (= outstanding()), the router's Pool
        self.held = 0  # outstanding() when the recorder last counted it (Recorder.observe)
        self.last_span_t, self.spans_now = -1.0, 0  # the last span's start, spans started then before it
        self.ts_t, self.ts_n = 0.0, 0  # the last sample's time and batch + queued (Recorder.sample)
        self.watch = WATCH.get()
        if self.watch is not None:
            self.watch.attach(recorder)
        env.process(self.run())

    # ------------------------------------------------------------------ KV accounting
    def kv_now(self) -> float:
        """KV bytes held now (running sequences, prompts being prefilled, agents' kept KV)."""
        return self.kv.held()

    def can_admit(self) -> bool:
        active = len(self.running) + len(self.prefilling) + len(self.landing) + len(self.remote)
        if active >= self.max_batch:
            return False
        if self.swapped:
            need = float(self.kv.blocks(self.swapped[0][1]))
            return self.kv_now() + need + self.kv.headroom(active) <= self.capacity
        return bool(self.queue) and self.kv.fits(self.queue[0], active)

    def outstanding(self) -> int:
        return (len(self.queue) + len(self.prefilling) + len(self.landing) + len(self.running) + len(self.swapped)
                + len(self.in_transit) + len(self.remote))

    def free_kv(self) -> float:
        return self.capacity - self.kv_now()

    # ------------------------------------------------------------------ arrivals
    def submit(self, rid: int) -> None:
        self.queue.append(rid)
        self.n_out += 1
        if self.pool is not None:
            self.pool.changed(self)
        if not self.wake.triggered and self.admissible():
            self.wake.succeed()

    def admissible(self) -> bool:
        """The head of the queue can start now, or once kept KV of idle tasks is evicted."""
        return self.can_admit() or self._victim() is not None

    def _victim(self) -> int | None:
        """The least recently parked task whose kept KV is not the head's own (None: none)."""
        if not self.queue or self.swapped:
            return None
        return self.kv.agents.victim(self.queue[0])

    # ------------------------------------------------------------------ main loop
    def run(self):
        env = self.env
        while True:
            self._land()  # first: a landing sequence may finish at once and free its slot
            if self.swapped:
                yield from self._admit()
            elif self.queue:
                self._admit_queue(env.now)
            if self.prefilling:
                yield from self._mixed_round()
            elif self.running:
                yield from self._decode_span()
            elif self.landing:
                self._account(0)
                yield env.timeout(self.landing[0][0] - env.now)
                self.rec.events += 1
                self._advance_account(0.0)
            elif not self.admissible():  # nothing to do until an arrival
                self._account(0)
                self.wake = env.event()
                yield self.wake

    def _land(self) -> None:
        """Prompts whose first token is out by now join the running batch."""
        landing, now = self.landing, self.env.now + 1e-12
        while landing and landing[0][0] <= now:
            t, _, p = heapq.heappop(landing)
            self._prefill_done(p, t)

    def _admit(self):
        """Swapped-out sequences first (each waits for its KV to come back over the link), then
        the queue."""
        while self.swapped and self.can_admit():
            rid, ctx, gen = self.swapped.popleft()
            self.rec.swaps[rid] += 1
            yield from self._swap(rid, ctx, self.from_tier)  # swap-in: the replica waits for the KV
            self._join(rid, ctx, gen)
        if not self.swapped:
            self._admit_queue(self.env.now)

    def _admit_queue(self, now: float) -> None:
        """Prompts start their prefill, queue order, while KV and ``max_batch`` allow (kept KV of
        idle agent tasks is evicted to make room); their admission is stamped ``now``."""
        rec, queue = self.rec, self.queue
        while queue:
            if not self.can_admit():
                victim = self._victim()
                if victim is None:
                    break
                self.kv.agents.evict(victim)
                continue
            rid = queue.popleft()
            prefix = self._cached_prefix(rid) if rec.session[rid] >= 0 else rec.cached[rid]
            total = prefix + rec.prompt[rid] + rec.generated[rid]  # a recompute prefills what it had
            res = self.kv.admit(rid, total)
            if rec.admit[rid] < 0:
                rec.admit[rid] = now
            self.prefilling.append(Prefill(rid, prefix, total, res, prefix))

    def _mixed_round(self):
        """Rounds that prefill while the running batch decodes, as one event (a prefill span):
        the head prompt's full-budget rounds in closed form (batch.head_rounds), then at most
        one round in which its last chunk goes in (and the next prompts' first ones). The span
        also ends when a running sequence is due to finish, before the batch's KV would outgrow
        the replica (preempt/swap), or after 64 rounds."""
        growth = self.kv.growth
        if growth:
            cap = self.capacity - self.kv.pending()
            while self.running and self.kv.at(self.R + 1) > cap:
                yield from self._evict()
        b, heap, R0 = len(self.running), self.heap, self.R
        limit = min(64, (heap[0][0] - R0) if heap else 64)
        if growth:  # prompts hold their blocks already; only the running batch grows
            limit = max(1, self.kv.rounds_left(limit))
        m, chunk, ab, s0 = self.m, self.chunk, self.a * b, self.sum_c0
        ctx = (s0 + ab * R0) / b if b else 0.0
        # the link's time per round (a ledger that never paces is not asked: no decode round to cost)
        floor = self.kv.pace(m.decode(b, ctx)[0]) if b and self.kv.paces else 0.0
        head, now = self.prefilling[0], self.env.now
        if head.entered < 0:  # (Prefill.enter, inline: once per span)
            head.entered = now
        budget = m.prefill_budget(b, ctx, chunk)
        if budget > 0 and (head.total - head.pos - 1) // budget > 0:  # the head fills whole rounds first
            pos0 = head.pos
            k, head.pos, total, link, ctx, budget = head_rounds(m, b, s0, ab, R0, head.pos, head.total, limit,
                                                                chunk, self._busy_n, self.exact_prefill,
                                                                (ctx, budget))
            total = max(total, k * floor)
            self.prefilled += head.pos - pos0
        else:  # (what head_rounds would find: no such round)
            k, total, link = 0, 0.0, 0.0
        landed = []
        if k < limit:  # the head's last chunk goes in (the next prompts' first ones fill the budget)
            pieces, tokens = [], 0
            for p in self.prefilling:
                if tokens >= budget:
                    break
                take = min(budget - tokens, p.total - p.pos)
                if take > 0:
                    pieces.append((p, take))
                    tokens += take
            if pieces:
                dur, bz, ln, passing, cycle = m.mixed(b, ctx, tokens, pieces[0][0].pos, chunk)
                dur = max(dur, floor)
                self.prefilled += tokens
                for p, take in pieces:
                    p.enter(now + total)
                    p.pos += take
                    if p.pos >= p.total:
                        # its chunks follow each other through the stages; never sooner than alone
                        at = total + max(passing + (math.ceil(take / chunk) - 1) * cycle, dur)
                        landed.append((max(at, p.entered - now + m.idle_ttft(p.total, p.cached, chunk)), p))
                total += dur
                count(self._busy_n, bz, 1)
                link += ln
                k += 1
        self._account(b)
        yield self.env.timeout(total)
        self.rec.events += 1
        self.link_busy += link
        self.seq_rounds += b * k
        if self.kv.paces:
            self.kv.paced(k)
        self.R += k
        self._advance_account(total)
        for at, p in landed:
            self.prefilling.remove(p)
            heapq.heappush(self.landing, (now + at, p.rid, p))
        if heap and heap[0][0] <= self.R:
            self._finish_due()
        if self.landing:
            self._land()

    def _cached_prefix(self, rid: int) -> int:
        """Tokens of the prompt whose KV is here, not prefilled (``rec.cached``; ``rec.prompt`` is
        the rest): a request's cached prefix (prefix caching), or a task's context when its KV
        was kept or brought back (the call's prompt becomes what is left of its context)."""
        rec = self.rec
        s = rec.session[rid]
        if s < 0:
            return int(rec.cached[rid])
        cached = self.kv.agents.cached(rid) or rec.restored[rid]
        prefix = int(rec.ctx_before[rid]) if cached else 0
        rec.prompt[rid] = int(rec.ctx_before[rid] + rec.new[rid]) - prefix
        rec.cached[rid] = prefix
        return prefix

    def _prefill_done(self, p: Prefill, t: float) -> None:
        rec, rid = self.rec, p.rid
        rec.generated[rid] += 1  # the last prompt position yields the next token
        if rec.first[rid] < 0:
            rec.first[rid] = t
            if self.watch is not None:
                self.watch.first(rid, t)
        self._join(rid, p.total + 1, rec.generated[rid], p.reserved)

    def _join(self, rid: int, ctx: float, generated: int, reserved: float = 0.0) -> None:
        """A sequence joins the running batch (its wait/offload reservation carries over)."""
        rec = self.rec
        remaining = rec.output[rid] - generated
        if remaining <= 0:
            self.kv.release(rid, reserved)
            self._finished(rid)
            return
        if self.kv.detach(rid, ctx, remaining, reserved):  # decodes apart, at its reads' pace (offload)
            return
        R, a = self.R, self.a
        fin = R + math.ceil(remaining / a - 1e-9)
        s = Seq(rid, float(ctx), R, fin, reserved)
        self.running[rid] = s
        self.sum_c0 += s.c0 - a * R
        heapq.heappush(self.heap, (fin, rid))

    def _decode_span(self):
        env, b, R, decode = self.env, len(self.running), self.R, self.m.decode
        t0, busy, link = decode(b, (self.sum_c0 + self.a * b * R) / b)
        floor = self.kv.pace(t0)  # offload, together: the batch's reads per round over the link
        t0 = max(t0, floor)
        n = self.heap[0][0] - R
        if self.landing:  # stop at the round boundary after the next prompt lands
            n = max(1, min(n, math.ceil((self.landing[0][0] - env.now) / t0 - 1e-9)))
        if self.kv.growth:
            n = self.kv.rounds_left(n)
            if n == 0:
                yield from self._evict()
                return
        t1 = max(decode(b, (self.sum_c0 + self.a * b * (R + n - 1)) / b)[0], floor) if n > 1 else t0
        total = n * (t0 + t1) / 2.0
        self._account(b)
        start = env.now
        wake = self.wake = env.event()
        # one plain event woken by whichever comes first: the span's end or an admissible arrival
        env.timeout(total).callbacks.append(lambda _e: wake.triggered or wake.succeed())
        yield wake
        self.rec.events += 1
        done = n
        if env.now - start < total - 1e-15:  # woken by an arrival: stop at the next round boundary
            elapsed = env.now - start
            k = rounds_within(elapsed, n, t0, t1)
            done = min(n, k + 1)
            boundary = span_time(done, n, t0, t1)
            if boundary > env.now - start:
                yield env.timeout(boundary - (env.now - start))
            total = boundary
        count(self._busy_n, busy, done)
        self.link_busy += link * done
        self.seq_rounds += b * done
        if self.kv.paces:
            self.kv.paced(done)
        self.R += done
        self._advance_account(total)
        self._finish_due()

    def _evict(self):
        """KV is full: take the youngest running sequence out (recompute later, or swap out)."""
        rid = max(self.running, key=lambda r: (self.running[r].r0, r))
        s = self.running.pop(rid)
        self.sum_c0 -= s.c0 - self.a * s.r0
        self.heap = [(f, r) for f, r in self.heap if r != rid]
        heapq.heapify(self.heap)
        ctx = s.c0 + self.a * (self.R - s.r0)
        self.rec.decode_rounds[rid] += self.R - s.r0
        gen = int(self.rec.generated[rid] + math.floor((self.R - s.r0) * self.a + 1e-9))
        self.rec.generated[rid] = gen
        if self.kv.transfer_bytes(ctx) is not None:  # swap: out over the link, back in when there is room
            yield from self._swap(rid, ctx, self.to_tier)  # the KV leaves through the link before it is free
            self.swapped.append((rid, ctx, gen))
        else:
            self.rec.preemptions[rid] += 1
            self.rec.reprefill += int(self.rec.prompt[rid]) + gen  # what its re-admission prefills
            self.queue.appendleft(rid)

    def _swap(self, rid: int, ctx: float, path: tuple):
        """A swapped sequence's KV crosses the link (out, or back in); the replica waits for it.
        Its blocks are held meanwhile: until they have left, or from when they start coming in."""
        nbytes, blocks, inbound = self.kv.transfer_bytes(ctx), float(self.kv.blocks(ctx)), path is self.from_tier
        self.xfer_bytes += nbytes
        self.in_transit.add(rid)
        self.kv.moving += blocks
        self._account(len(self.running))
        start = self.env.now
        yield self.net.start(nbytes, path).done
        self.in_transit.discard(rid)
        self.rec.events += 1
        if not inbound:
            self.kv.moving -= blocks
        self._advance_account(self.env.now - start)
        if inbound:  # they join the batch as its blocks
            self.kv.moving -= blocks

    def _finish_due(self) -> None:
        heap, R = self.heap, self.R
        if not heap or heap[0][0] > R:
            return
        rec, running, a, release = self.rec, self.running, self.a, self.kv.release
        while heap and heap[0][0] <= R:
            fin, rid = heapq.heappop(heap)
            s = running.pop(rid)
            self.sum_c0 -= s.c0 - a * s.r0
            rec.generated[rid] += math.ceil((fin - s.r0) * a - 1e-9)
            rec.decode_rounds[rid] += fin - s.r0
            release(rid, s.reserved)
            self._finished(rid)

    def _finished(self, rid: int) -> None:
        self.n_out -= 1
        if self.pool is not None:
            self.pool.changed(self)
        self.rec.done(rid, self, self.env.now)
        if self.watch is not None:
            self.watch.finished(rid)
