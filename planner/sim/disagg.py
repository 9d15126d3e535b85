"""Disaggregated prefill and decode: a pool of prefill replicas (one hardware) in front of the
decode replicas (another), the prompt's KV moved between them over the off-chip links.

Event flow of one request (two pools, one recorder):

1. arrival -> the router picks a prefill replica (``deployment.router`` over the prefill pool);
2. prefill replica (:class:`PrefillSide`): the ordinary scheduler with nothing to decode.
   Admission reserves the prompt's KV (at the prefill side's own KV precision); prompts are
   prefilled in token-budget rounds, first come first served (a GPU step takes one chunk of
   ``prefill_chunk_tokens`` tokens, of one prompt or of several short ones; a wafer pipeline a
   chunk per stage); the pass of a prompt's last chunk yields its first token: **TTFT is
   measured here**. The request leaves the prefill replica's count (the *handoff*) and joins
   the queue of a decode replica (the router over the decode pool); its KV stays held on the
   prefill replica until it has left;
3. decode replica (:class:`DecodeSide`): at a round boundary, when KV for prompt + output
   fits (and ``max_batch`` allows), admission reserves it and pulls the prompt's KV: one
   transfer (a :class:`~planner.sim.links.Flow`) of the decode side's KV bytes of the prompt
   across (the prefill replica's NICs out, the decode replica's NICs in), at most one
   sequence's rate (``seq_bytes_per_s``: an MLA sequence's KV sits on one GPU), sharing both
   links max-min fairly with every other transfer (N transfers into one wafer's 150 GB/s
   each take N times one's time). The decode replica keeps decoding meanwhile (blocks are
   written by the NICs, not by its compute);
4. the last byte is in: the prefill replica frees the prompt's KV; the sequence joins the
   decode batch at the next round boundary with context prompt + 1 and one token out, and
   decodes the rest like any sequence. No prefill on this side.

A lone request therefore takes TTFT (prefill) + KV bytes / min(egress, ingress, per-sequence
cap) + its decode rounds; the gap between its first and second token is the wait for decode
admission + the transfer + the rest of a round + one decode round, and per-user speed (tokens
after the first over the time from first to last) counts it.

Choices: the transfer starts when the prefill is done (not streamed layer by layer while the
prompt is prefilled): streaming would have the decode side reserve its scarce SRAM for the
whole prefill, and it hides at most the transfer (a few ms next to a prefill of 0.1-2 s).
Bytes on the wire are the decode side's KV of the prompt (its precision: a different
prefill-side KV precision is cast at the sender, whose time is left out: one pass over the
prompt's KV at HBM speed, ~0.3 ms for 2.3 GB). A decode replica's NICs are the link its
external tier is reached through when the two have the same rate (a wafer's 12 x 100 GbE),
so the KV shares it with swap and offload traffic; otherwise a link of their own.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from planner.sim.errors import InvariantError, TooLarge
from planner.sim.kv import Reserve
from planner.sim.links import Link
from planner.sim.replica import Replica


@dataclass(frozen=True)
class PrefillPool:
    """The prefill pool and the path to the decode replicas (bytes/s, each direction)."""

    rounds: object  # one prefill replica's round model (StepRounds, ConstantRounds)
    replicas: int
    egress_bytes_per_s: float  # one prefill replica's NICs together (KV leaving)
    ingress_bytes_per_s: float  # one decode replica's NICs together (KV arriving)
    seq_bytes_per_s: float = math.inf  # one sequence's transfer at most (its KV on one device per stage)
    chunk: int = 2048  # prefill tokens per chunk on the prefill replicas


class PromptKV(Reserve):
    """A prefill replica's KV: the prompt's, reserved at admission, held until it has left."""

    def __init__(self, replica, prompt_bytes: list[float]):
        super().__init__(replica)
        self.prompt_bytes = prompt_bytes

    def need(self, rid: int) -> float:
        return self.prompt_bytes[rid]

    def admit(self, rid: int, total: int) -> float:
        self.reserved += self.prompt_bytes[rid]
        return self.prompt_bytes[rid]


class PrefillSide(Replica):
    """A prefill replica: prompts in, first tokens out; a sequence with more to say is handed
    to the decode pool instead of joining a batch here."""

    def __init__(self, env, index: int, pool: PrefillPool, recorder, block_tokens: int, split: "Split"):
        super().__init__(env, index, pool.rounds, recorder, "wait", None, pool.chunk, block_tokens)
        self.kv = PromptKV(self, split.prompt_bytes)
        self.capacity = self.kv.capacity
        self.egress = Link(pool.egress_bytes_per_s, f"prefill {index} out")
        self.split = split

    def _join(self, rid: int, ctx: float, generated: int, reserved: float = 0.0) -> None:
        if self.rec.output[rid] - generated <= 0:  # a one-token reply is done here
            super()._join(rid, ctx, generated, reserved)
            return
        self.n_out -= 1
        if self.pool is not None:
            self.pool.changed(self)
        self.split.handoff(self, rid, reserved)


class DecodeSide(Replica):
    """A decode replica whose requests arrive with their prompt's KV on a prefill replica."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.split: Split | None = None
        self.ingress: Link | None = None
        self.ready: deque[tuple[int, float]] = deque()  # (rid, reservation): KV in, joins at the next boundary

    def can_admit(self) -> bool:
        if len(self.running) + len(self.in_transit) >= self.max_batch:
            return False
        return super().can_admit()

    def _admit_queue(self, now: float) -> None:
        """Reserve KV for prompt + output and pull the prompt's KV (in_transit until it joins);
        the admission was stamped on the prefill side. (Nothing is ever swapped out here: the
        decode pool's ledger is wait, so Replica._admit never runs.)"""
        rec = self.rec
        while self.queue and self.can_admit():
            rid = self.queue.popleft()
            res = self.kv.admit(rid, int(rec.prompt[rid] + rec.generated[rid]))
            self.in_transit.add(rid)
            self.split.pull(self, rid, res)

    def arrived(self, rid: int, reserved: float) -> None:
        self.ready.append((rid, reserved))
        if not self.wake.triggered:  # a running span stops at its next round boundary
            self.wake.succeed()

    def _land(self) -> None:
        super()._land()
        rec = self.rec
        while self.ready:
            rid, res = self.ready.popleft()
            self.in_transit.discard(rid)
            self.split.joined[rid] = self.env.now
            self._join(rid, float(rec.prompt[rid] + rec.generated[rid]), int(rec.generated[rid]), res)


class Split:
    """One run's two pools and the transfers between them (see the module docstring)."""

    def __init__(self, env, net, pool: PrefillPool, decode: list[DecodeSide], rec, block_tokens: int, route):
        self.env, self.net, self.pool, self.decode, self.rec, self.route = env, net, pool, decode, rec, route
        prompts = np.asarray(rec.prompt, float)
        self.prompt_bytes = [float(x) for x in pool.rounds.kv_bytes(prompts)]
        self.wire_bytes = [float(x) for x in decode[0].m.kv_bytes(prompts)]  # the decode side's KV of the prompt
        base = len(decode)
        self.prefill = [PrefillSide(env, base + i, pool, rec, block_tokens, self) for i in range(pool.replicas)]
        cap = self.prefill[0].capacity
        worst = int(np.argmax(self.prompt_bytes))
        if self.prompt_bytes[worst] > cap:
            raise TooLarge(f"a prompt of {int(rec.prompt[worst])} tokens needs {self.prompt_bytes[worst]:.3g} B of "
                           f"KV, more than a prefill replica holds ({cap:.3g} B)", kv=True)
        for r in decode:
            r.split = self
            own = r.from_tier[-1] if r.from_tier else None  # the link its external tier is reached through
            same = own is not None and math.isclose(own.capacity, pool.ingress_bytes_per_s, rel_tol=1e-12)
            r.ingress = own if same else Link(pool.ingress_bytes_per_s, f"replica {r.index} nic in")
        rec.replicas = list(decode) + self.prefill
        n = rec.n
        self.handed, self.started, self.ended, self.joined = (np.full(n, -1.0) for _ in range(4))
        self.source = np.full(n, -1, np.int64)
        self._held: dict[int, tuple[PrefillSide, float]] = {}

    def handoff(self, src: PrefillSide, rid: int, reserved: float) -> None:
        """First token out on ``src``: the request joins a decode replica's queue."""
        self.handed[rid] = self.env.now
        self.source[rid] = src.index
        self._held[rid] = (src, reserved)
        dst = self.route(self.decode, rid)
        self.rec.replica[rid] = dst.index
        dst.submit(rid)
        now = self.env.now  # the request moved between replicas: both counted again (Recorder.observe)
        self.rec.observe(now, src)
        self.rec.observe(now, dst)

    def pull(self, dst: DecodeSide, rid: int, reserved: float) -> None:
        """``dst`` admitted ``rid``: its prompt's KV crosses from the prefill replica."""
        src, held = self._held.pop(rid)
        nbytes = self.wire_bytes[rid]
        self.started[rid] = self.env.now
        flow = self.net.start(nbytes, (src.egress, dst.ingress), self.pool.seq_bytes_per_s)

        def done(_event):
            self.ended[rid] = self.env.now
            src.kv.release(rid, held)
            src.xfer_bytes += nbytes
            if not src.wake.triggered and src.admissible():  # its KV freed: a queued prompt may start
                src.wake.succeed()
            dst.arrived(rid, reserved)
        flow.done.callbacks.append(done)

    def check(self) -> None:
        """Every request of more than one token was handed off, moved and joined once, in that
        order after its first token; every transfer finished once and the links carried no more
        than was sent; the prefill replicas hold no KV at the end."""
        rec, eps = self.rec, 1e-9
        multi = rec.output > 1
        order = (self.handed[multi] >= rec.first[multi] - eps) & (self.started[multi] >= self.handed[multi] - eps) \
            & (self.ended[multi] >= self.started[multi] - eps) & (self.joined[multi] >= self.ended[multi] - eps) \
            & (rec.finish[multi] >= self.joined[multi] - eps) & (self.handed[multi] >= 0)
        if not order.all():
            i = int(np.flatnonzero(multi)[np.argmin(order)])
            raise InvariantError(f"request {i}: handoff {self.handed[i]:.6g}, transfer {self.started[i]:.6g} -> "
                                 f"{self.ended[i]:.6g}, joined {self.joined[i]:.6g} out of order")
        sent = float(np.asarray(self.wire_bytes)[multi].sum())
        done = sum(p.xfer_bytes for p in self.prefill)  # transfers finished, each once
        out = sum(p.egress.carried for p in self.prefill)  # (a flow's last picosecond is not carried)
        if not math.isclose(done, sent, rel_tol=1e-9, abs_tol=1e-6) or out > sent * (1 + 1e-9) + 1e-6:
            raise InvariantError(f"KV bytes: {sent:.9g} to send, {done:.9g} sent, {out:.9g} carried out")
        for p in self.prefill:
            if abs(p.kv.reserved) > 1e-6 * max(p.capacity, 1.0):
                raise InvariantError(f"prefill replica {p.index} still holds {p.kv.reserved:.4g} B of KV")

    def figures(self, measured: np.ndarray, makespan: float) -> dict:
        """Summary figures: transfer time and handoff gap percentiles (measured requests of more
        than one token), the decode NICs' and the prefill pool's busy shares."""
        m = measured & (self.rec.output > 1)
        xfer = self.ended[m] - self.started[m]
        gap = self.joined[m] - self.rec.first[m]
        pct = (lambda x, q: float(np.percentile(x, q)) if len(x) else math.nan)
        moved = sum(self.wire_bytes[i] for i in np.flatnonzero(self.rec.output > 1))
        ingress = sum(r.ingress.capacity for r in self.decode)
        busy = np.mean([p.busy for p in self.prefill], axis=0) / max(makespan, 1e-12)
        return {"kv_transfer_p50_s": pct(xfer, 50), "kv_transfer_p99_s": pct(xfer, 99),
                "handoff_p50_s": pct(gap, 50), "handoff_p99_s": pct(gap, 99),
                "kv_ingress_util": moved / ingress / max(makespan, 1e-12),
                "prefill_util_max": float(busy.max())}

    def columns(self, frame):
        """The per-request table with the prefill replica, the handoff and the transfer."""
        out = frame.copy()
        out["prefill_replica"] = self.source
        out["handoff_s"] = self.handed
        out["kv_transfer_s"] = np.where(self.ended >= 0, self.ended - self.started, np.nan)
        out["decode_join_s"] = self.joined
        return out
