"""Off-chip links as shared resources: transfers share a link's bandwidth fairly.

A :class:`Link` is one direction of an off-chip path with a capacity in bytes/s (a wafer's
12 x 100 GbE "straw": 150 GB/s each way; an external memory tier's port). A :class:`Flow`
moves some bytes across a path of links (every link of the path carries all of them), never
faster than its own ``cap`` bytes/s (a sequence reading its KV can go no faster than its
rounds need it). Concurrent flows share bandwidth max-min fairly (processor sharing,
progressive filling): every flow gets the same rate unless a link it crosses is saturated by
others, or its cap is lower, and capacity one flow cannot use goes to the others.

Coarse events: rates change only when the set of flows (or a cap) changes, so between two
changes every flow moves at a constant rate and its finish time is closed form. The network
keeps one pending SimPy timeout, for the earliest finish; a start, a finish or a cap change
moves every flow on by rate x elapsed time, recomputes the rates and sets the timeout again.
A transfer is thus an event when it starts and one when it finishes, whatever its size and
however many flows come and go meanwhile: no per-token or per-packet events, no polling.

Who uses them: each replica's KV path to its external tier, one link per direction (its
stages' links in parallel), through the tier unit's port when that has a limit (engine.wire:
``Replica.to_tier`` / ``from_tier``); swaps, offloaded KV reads and agents' KV trips are flows
on them. A KV transfer from another pool (prefill on other hardware, decode here) is a flow
whose path ends in the receiving replica's inbound link (``from_tier[-1]``), so it shares that
wafer's straw with everything else arriving.

Checks (tests/test_links.py): one flow takes bytes / capacity; N flows started together each
take N times one flow's time; staggered flows match the processor-sharing closed form; a
capped flow leaves the rest to the others; a path is as fast as its busiest link allows.
"""
from __future__ import annotations

import math


class Link:
    """One direction of an off-chip path: ``capacity`` bytes/s shared by the flows crossing it."""

    __slots__ = ("name", "capacity", "carried")

    def __init__(self, capacity: float, name: str = ""):
        if not capacity > 0:
            raise ValueError(f"link {name!r}: capacity must be > 0 (got {capacity})")
        self.name, self.capacity, self.carried = name, float(capacity), 0.0

    def __repr__(self) -> str:
        return f"Link({self.name!r}, {self.capacity:.4g} B/s)"


class Flow:
    """A transfer in progress: ``left`` bytes to go (``math.inf``: a stream, stopped by its
    owner) across ``path`` at ``rate`` bytes/s (set by the network), at most ``cap``;
    ``done`` succeeds when its last byte is across."""

    __slots__ = ("left", "path", "cap", "rate", "done", "size", "moved")

    def __init__(self, env, nbytes: float, path: tuple, cap: float):
        self.left = self.size = float(nbytes)
        self.path, self.cap, self.rate, self.moved = path, cap, 0.0, 0.0
        self.done = env.event()


def max_min(flows, path_of=lambda f: f.path, cap_of=lambda f: f.cap) -> list[float]:
    """Max-min fair rates of ``flows`` (progressive filling): raise every unfrozen flow's rate
    together until a link saturates (its flows freeze at the level) or a flow reaches its cap
    (it freezes there); repeat with what is left."""
    rate = [0.0] * len(flows)
    left: dict[Link, float] = {}
    users: dict[Link, list[int]] = {}
    for i, f in enumerate(flows):
        for link in path_of(f):
            left.setdefault(link, link.capacity)
            users.setdefault(link, []).append(i)
    open_ = set(range(len(flows)))
    while open_:
        level, tight = math.inf, None
        for link, idx in users.items():
            n = sum(1 for i in idx if i in open_)
            if n and left[link] / n < level:
                level, tight = left[link] / n, link
        capped = min(open_, key=lambda i: (cap_of(flows[i]), i))
        if cap_of(flows[capped]) <= level:  # a flow's own cap binds first: it takes no more
            freeze = [capped]
            level = cap_of(flows[capped])
        elif tight is None:  # no link limits the rest (cannot happen: every flow crosses a link)
            raise ValueError("a flow crosses no link and has no cap")
        else:
            freeze = [i for i in users[tight] if i in open_]
        for i in freeze:
            rate[i] = level
            open_.discard(i)
            for link in path_of(flows[i]):
                left[link] = max(left[link] - level, 0.0)
    return rate


class Network:
    """The links of one simulation and the flows crossing them (see the module docstring)."""

    def __init__(self, env):
        self.env = env
        self.flows: list[Flow] = []
        self._t = env.now
        self._token = 0  # the pending timeout's generation: an older one finds it changed and does nothing

    def start(self, nbytes: float, path, cap: float = math.inf) -> Flow:
        """A transfer of ``nbytes`` across ``path`` (a link or a tuple of links), no faster than
        ``cap`` bytes/s; wait for ``flow.done``. Zero bytes are done at once."""
        path = (path,) if isinstance(path, Link) else tuple(path)
        if not path:
            raise ValueError("a flow needs at least one link")
        if not cap > 0:
            raise ValueError(f"a flow's cap must be > 0 (got {cap})")
        flow = Flow(self.env, nbytes, path, cap)
        if flow.left <= 0:
            flow.left = 0.0
            flow.done.succeed(flow)
            return flow
        self._advance()
        self.flows.append(flow)
        self._reschedule()
        return flow

    def stop(self, flow: Flow) -> None:
        """Take ``flow`` off its links now (a stream its owner no longer needs)."""
        if flow in self.flows:
            self._advance()
            self.flows.remove(flow)
            self._reschedule()

    def set_cap(self, flow: Flow, cap: float) -> None:
        if not cap > 0:
            raise ValueError(f"a flow's cap must be > 0 (got {cap})")
        if flow.cap != cap:
            self._advance()
            flow.cap = cap
            self._reschedule()

    def rate_for(self, path, cap: float = math.inf) -> float:
        """The rate a new flow on ``path`` would get now (nothing is started)."""
        path = (path,) if isinstance(path, Link) else tuple(path)
        probe = Flow(self.env, math.inf, path, cap)
        return max_min(self.flows + [probe])[-1]

    def _advance(self) -> None:
        """Move every flow on at its rate since the last change."""
        dt = self.env.now - self._t
        self._t = self.env.now
        if dt <= 0:
            return
        for f in self.flows:
            moved = f.rate * dt
            f.left -= moved
            f.moved += moved
            for link in f.path:
                link.carried += moved

    def _reschedule(self) -> None:
        """Rates for the current flows; finish those with nothing left; one timeout for the next finish."""
        while True:
            rates = max_min(self.flows)
            for f, r in zip(self.flows, rates):
                f.rate = r
            # a flow finishes now when what is left would take under a picosecond (float residue)
            done = [f for f in self.flows if math.isfinite(f.left) and f.left <= (f.rate + f.size) * 1e-12]
            if not done:
                break
            for f in done:
                self.flows.remove(f)
                f.left = 0.0
                f.done.succeed(f)
        self._token += 1
        finite = [f.left / f.rate for f in self.flows if math.isfinite(f.left) and f.rate > 0]
        if finite:
            token = self._token
            self.env.timeout(min(finite)).callbacks.append(lambda _e: self._due(token))

    def _due(self, token: int) -> None:
        if token == self._token:
            self._advance()
            self._reschedule()
