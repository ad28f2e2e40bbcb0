"""Which pipelines a config asks for, and opening them (connect, install triggers)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.capture.sqlite_trigger import TriggerCapture
from edge_agent.capture.timestamp import TimestampCapture
from edge_agent.config import Config
from edge_agent.config_sources import SourceConfig, TimestampTable
from edge_agent.runtime.pipeline import Parts
from edge_agent.runtime.timestamp_pipeline import TimestampPipeline
from edge_agent.runtime.trigger_pipeline import TriggerPipeline

Pipeline = TriggerPipeline | TimestampPipeline


@dataclass(frozen=True)
class Spec:
    key: str
    source: SourceConfig
    table: TimestampTable | None = None  # None: the source's trigger tables


def specs(cfg: Config) -> list[Spec]:
    found: list[Spec] = []
    for src in cfg.sources:
        if src.tables:
            found.append(Spec(src.name, src))
        found += [Spec(f"{src.name}/{t.name}", src, t) for t in src.timestamp_tables]
    return found


def open_pipeline(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    """Connect and get ready to capture; raises the source's errors."""
    if spec.table is not None:
        ts = TimestampCapture(spec.source, spec.table)
        try:
            ts.open()
        except BaseException:
            ts.close()
            raise
        return TimestampPipeline(ts, parts)
    capture = TriggerCapture(spec.source)
    capture.captured_before = set(parts.state.table_positions(spec.source.name))
    durable, _ = parts.state.source_position(spec.source.name)
    try:
        capture.open(durable, now_ms)
    except BaseException:
        capture.close()
        raise
    return TriggerPipeline(capture, parts)


def table_errors(pipe: Pipeline) -> dict[str, str]:
    return pipe.capture.table_errors if isinstance(pipe, TriggerPipeline) else {}


def actions(pipe: Pipeline) -> dict[str, str]:
    return pipe.capture.actions if isinstance(pipe, TriggerPipeline) else {}
