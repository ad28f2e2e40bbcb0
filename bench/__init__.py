"""edge-agent benchmarks: `python -m bench` (full) or `python -m bench --quick` (CI smoke)."""
