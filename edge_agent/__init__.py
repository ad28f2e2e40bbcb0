"""edge-agent: change-data capture for ARM64 gateways, shipped as bronze Parquet."""

__version__ = "0.1.0"
