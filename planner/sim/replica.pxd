# Cython declarations for replica.py (compiled installs only, setup.py; plain Python ignores
# this file). Declared attributes are read as struct fields rather than looked up in a dict:
# the event loop reads them per span. Every one is a Python object (same values, same
# arithmetic); an attribute not declared here still works (it goes to __dict__), only slower.
# The class becomes an extension type: patch its methods through a subclass (tests do).
from planner.sim.accounts cimport Accounts

cdef class Replica(Accounts):
    cdef public object env, index, m, rec, policy, max_batch, chunk, block, offload_batching, a
    cdef public object queue, prefilling, landing, running, heap, swapped, in_transit, remote
    cdef public object R, sum_c0, kv, capacity, wake, seq_rounds, prefilled, _busy, _busy_n
    cdef public object link_busy, xfer_bytes, net, to_tier, from_tier, kv_area, kv_peak, last_kv
    cdef public object n_out, pool, held, last_span_t, spans_now, ts_t, ts_n, watch
    cdef dict __dict__
