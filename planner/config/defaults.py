"""Defaults the command line needs before any schema is built (importing pydantic to read a
number would slow every ``plan`` start): the schema takes them from here."""

# tokens per prefill chunk unless a scenario says otherwise (chunked prefill; engines use 512-8192)
PREFILL_CHUNK = 2048
