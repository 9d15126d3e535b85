# Cython declarations for kv.py (compiled installs only; see replica.pxd for why and how).
cdef class AgentKV:
    cdef public object rep, rec, pinned, leaving, outbound
    cdef dict __dict__

cdef class Ledger:
    cdef public object rep, m, rec, capacity, shared, agents
    cdef dict __dict__

cdef class Reserve(Ledger):
    cdef public object reserved

cdef class Offload(Reserve):
    cdef public object together, on_chip, placed, streaming, stream, round_bytes

cdef class Preempt(Ledger):
    cdef public object block, moving, skip

cdef class Swap(Preempt):
    pass
