"""Discrete-event serving simulation (SimPy): arrivals, routing, continuous batching on
wafer pipelines or GPU replicas, KV-cache residency, off-chip links.

One event per change of batch membership (admission, finish, eviction) or per prefill
round; pure decode between those is advanced in closed form.
"""
