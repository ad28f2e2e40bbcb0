"""Which pipelines a config asks for, and opening them (connect, install triggers).

Pipelines are found by the source's ``(kind, mode)`` in one registry, so the
agent never asks which database or mode a pipeline reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.capture.sqlite_trigger import TriggerCapture
from edge_agent.capture.timestamp import TimestampCapture
from edge_agent.config import Config
from edge_agent.config_sources import SourceConfig, TimestampTable
from edge_agent.errors import ConfigError
from edge_agent.runtime.pipeline import Parts, Pipeline
from edge_agent.runtime.timestamp_pipeline import TimestampPipeline
from edge_agent.runtime.trigger_pipeline import TriggerPipeline

if TYPE_CHECKING:
    from edge_agent.capture.pg_timestamp import PgTimestampCapture
    from edge_agent.capture.pg_trigger import PgTriggerCapture


@dataclass(frozen=True)
class Spec:
    key: str
    source: SourceConfig
    table: TimestampTable | None = None  # None: the source's trigger tables

    @property
    def mode(self) -> str:
        if self.table is not None:
            return "timestamp"
        return "logical" if self.source.mode == "logical" else "trigger"


Opener = Callable[[Spec, Parts, int], Pipeline]
OPENERS: dict[tuple[str, str], Opener] = {}


def opener(kind: str, mode: str) -> Callable[[Opener], Opener]:
    def register(fn: Opener) -> Opener:
        OPENERS[(kind, mode)] = fn
        return fn

    return register


def specs(cfg: Config) -> list[Spec]:
    found: list[Spec] = []
    for src in cfg.sources:
        if src.tables:
            found.append(Spec(src.name, src))
        found += [Spec(f"{src.name}/{t.name}", src, t) for t in src.timestamp_tables]
    return found


def open_pipeline(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    """Connect and get ready to capture; raises the source's errors."""
    found = OPENERS.get((spec.source.kind, spec.mode))
    if found is None:
        raise ConfigError(
            f"sources.{spec.source.name}.mode",
            spec.mode,
            f"kind {spec.source.kind!r} supports "
            f"{sorted(m for k, m in OPENERS if k == spec.source.kind)}",
        )
    return found(spec, parts, now_ms)


@opener("sqlite", "timestamp")
def _sqlite_timestamp(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    if spec.table is None:
        raise ValueError(spec)
    return _open_timestamp(TimestampCapture(spec.source, spec.table), parts)


@opener("postgres", "timestamp")
def _postgres_timestamp(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    from edge_agent.capture.pg_timestamp import PgTimestampCapture  # psycopg only when needed

    if spec.table is None:
        raise ValueError(spec)
    return _open_timestamp(PgTimestampCapture(spec.source, spec.table), parts)


def _open_timestamp(ts: TimestampCapture | PgTimestampCapture, parts: Parts) -> Pipeline:
    try:
        ts.open()
    except BaseException:
        ts.close()
        raise
    return TimestampPipeline(ts, parts)


@opener("sqlite", "trigger")
def _sqlite_trigger(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    return _open_triggers(TriggerCapture(spec.source), parts, now_ms)


@opener("postgres", "trigger")
def _postgres_trigger(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    from edge_agent.capture.pg_trigger import PgTriggerCapture  # psycopg only when needed

    return _open_triggers(PgTriggerCapture(spec.source), parts, now_ms)


@opener("postgres", "logical")
def _postgres_logical(spec: Spec, parts: Parts, now_ms: int) -> Pipeline:
    from edge_agent.capture.pg_logical import PgLogicalCapture  # psycopg only when needed
    from edge_agent.runtime.logical_pipeline import LogicalPipeline

    capture = PgLogicalCapture(spec.source)
    saved = LogicalPipeline.saved(parts, capture.name)
    durable, _ = parts.state.source_position(capture.name)
    sealed = parts.state.table_positions(capture.name).values()
    try:
        checkpoint = capture.open(saved, max([durable, *sealed]))
        pipeline = LogicalPipeline(capture, parts)
        if checkpoint != saved:
            pipeline.store(checkpoint)
    except BaseException:
        capture.close()
        raise
    return pipeline


def _open_triggers(
    capture: TriggerCapture | PgTriggerCapture, parts: Parts, now_ms: int
) -> Pipeline:
    """Install the triggers (seeded at the durable position), then the pipeline."""
    sealed = parts.state.table_positions(capture.name)
    capture.captured_before = set(sealed)
    durable, _ = parts.state.source_position(capture.name)
    try:
        # A new change log starts above every recorded position (a ledger rebuilt from
        # the spool or the lake may hold sealed positions beyond ``durable``).
        capture.open(max([durable, *sealed.values()]), now_ms)
    except BaseException:
        capture.close()
        raise
    return TriggerPipeline(capture, parts)
