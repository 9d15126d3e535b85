"""The number formats a spec or scenario may name (weights, KV cache, compute).

Apart from the schema so that the command line can offer them without importing pydantic
(``plan --help`` starts in a few hundredths of a second)."""

PRECISIONS = ("fp16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4")
