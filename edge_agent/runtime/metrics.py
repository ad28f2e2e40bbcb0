"""The agent's figures: counted by the daemon each cycle, served to Prometheus (when
``agent.metrics_port`` is set, on 127.0.0.1 only) and published on the remote
``metrics`` topic. Names follow Fluent Bit's and Litestream's style:
``edge_agent_..._total`` counters, plain gauges for sizes. prometheus_client is
imported only when the endpoint is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge_agent.runtime.agent import Agent, StepSummary

# name -> (kind, help)
HELP: dict[str, tuple[str, str]] = {
    "changes_captured_total": ("counter", "Changes read from the sources into the writer."),
    "files_sealed_total": ("counter", "Bronze files sealed into the spool."),
    "files_shipped_total": ("counter", "Files the sink confirmed."),
    "cycle_errors_total": ("counter", "Errors reported by capture cycles (sources, sink)."),
    "files_dropped_total": ("counter", "Spool files dropped by when_full = drop_oldest."),
    "changes_dropped_total": ("counter", "Changes in the dropped files."),
    "corrupt_files_total": ("counter", "Spool files quarantined as corrupt."),
    "manifests_rebuilt_total": ("counter", "Manifests rebuilt from their files."),
    "remote_rejected_total": ("counter", "Remote control messages rejected."),
    "spool_bytes": ("gauge", "Bytes of sealed files waiting to ship."),
    "spool_files": ("gauge", "Sealed files waiting to ship."),
    "spool_quota_bytes": ("gauge", "The spool's quota (buffer.spool_quota)."),
    "buffered_bytes": ("gauge", "Bytes held by open writers (bounded by buffer.max_memory)."),
    "config_version": ("gauge", "The remote config version running (0: the local file)."),
}
_STATE_COUNTERS = {
    "dropped_files": "files_dropped_total",
    "dropped_changes": "changes_dropped_total",
    "corrupt_files": "corrupt_files_total",
    "manifests_rebuilt": "manifests_rebuilt_total",
    "remote_rejected": "remote_rejected_total",
}


@dataclass
class Tally:
    """What the daemon counts over its life (the state database counts the rest)."""

    changes: int = 0
    sealed: int = 0
    shipped: int = 0
    errors: int = 0

    def add(self, s: StepSummary) -> None:
        self.changes += s.changes
        self.sealed += s.sealed
        self.shipped += s.shipped
        self.errors += len(s.errors)


def figures(agent: Agent, tally: Tally, config_version: int) -> dict[str, float]:
    counters = agent.state.counters()
    ready = agent.state.ready_bytes()
    found: dict[str, float] = {
        "changes_captured_total": tally.changes,
        "files_sealed_total": tally.sealed,
        "files_shipped_total": tally.shipped,
        "cycle_errors_total": tally.errors,
        "spool_bytes": ready,
        "spool_files": len(agent.state.files("ready")),
        "spool_quota_bytes": agent.cfg.buffer.spool_quota,
        "buffered_bytes": agent.writer.buffered_bytes,
        "config_version": config_version,
    }
    for state_name, name in _STATE_COUNTERS.items():
        found[name] = counters.get(state_name, 0)
    return found


class Endpoint:
    """A Prometheus text endpoint on 127.0.0.1; ``update`` swaps in new figures."""

    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self._figures: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def update(self, values: dict[str, float]) -> None:
        self._figures = dict(values)  # one assignment: the scrape thread sees old or new

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, value in sorted(self._figures.items()):
            kind, text = HELP[name]
            if kind == "counter":
                yield CounterMetricFamily(f"edge_agent_{name.removesuffix('_total')}", text, value)
            else:
                yield GaugeMetricFamily(f"edge_agent_{name}", text, value)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
