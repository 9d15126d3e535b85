# Cython declarations for records.py (compiled installs only; see replica.pxd for why and how).
cdef class Recorder:
    cdef public object env, n, prompt, output, cached, reprefill, kv_full, arrival, admit, first
    cdef public object finish, generated, decode_rounds, preemptions, swaps, replica, events
    cdef public object event_limit, arrived, finished, in_system, area, last_t, held_area, held_t
    cdef public object held_n, ts_area, all_done, waiters, ts, replicas, session, ctx_before, new
    cdef public object cache_after, restored, kv_mode, pin_evictions
    cdef dict __dict__
