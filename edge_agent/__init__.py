"""edge-agent: change-data capture for ARM64 gateways, shipped as bronze Parquet."""

import os

# pyarrow's bundled mimalloc commits its arenas eagerly: ~14 MiB more peak RSS on a
# burst (BENCHMARKS.md, scenario 4). mimalloc reads the option when libarrow loads,
# so it is set before anything imports pyarrow; a value in the environment wins.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")

__version__ = "0.1.0"
