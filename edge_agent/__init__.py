"""edge-agent: change-data capture for ARM64 gateways, shipped as bronze Parquet."""

import os

# pyarrow's bundled mimalloc commits its arenas eagerly and keeps freed pages for a
# while before returning them: with eager commit off and purge delay 0 a 1M-change
# burst peaks ~20 MiB lower (docs/operations.md#memory, scenario 4 of BENCHMARKS.md).
# mimalloc reads its options when libarrow loads, so they are set before anything
# imports pyarrow; a value already in the environment wins.
MIMALLOC_DEFAULTS = {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0"}
for _name, _value in MIMALLOC_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
