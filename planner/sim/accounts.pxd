# Cython declarations for accounts.py (compiled installs only; plain Python ignores this file).
# Accounts is the base of Replica (replica.pxd), which declares the attributes.
cdef class Accounts:
    pass
