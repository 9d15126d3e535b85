"""Discrete-event serving simulation (SimPy): arrivals, routing, continuous batching on
wafer pipelines or GPU replicas, KV-cache residency, off-chip links.

One event per change of batch membership (admission, finish, eviction) or per prefill
round; pure decode between those is advanced in closed form.
"""


def compiled() -> bool:
    """True when the simulator runs compiled (setup.py: ``pip install .`` or a wheel), False when
    it runs as plain Python (an editable install, no C compiler, ``PLANNER_PURE_PYTHON``). The
    numbers are the same either way; only the speed differs."""
    from planner.sim import replica
    return not replica.__file__.endswith(".py")


def describe() -> str:
    """Which simulator runs, in words (``plan --version``, the benches)."""
    return "compiled (Cython)" if compiled() else \
        "plain Python (same numbers, slower; `pip install .` with a C compiler compiles it)"
