"""The project's own errors: every user-facing one names the thing, the value and the fix.

Third-party exceptions are mapped into these at the boundary (sources, shippers),
keeping the original as ``__cause__``; the run loop retries ``TransientError`` and
reports the rest.
"""

from __future__ import annotations

import json

# Exit codes used by the CLI, documented in docs/cli.md.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_PENDING = 4
EXIT_SOURCE_FAILING = 5
EXIT_INCOMPLETE = 6  # lake verify: ordinals missing
EXIT_CORRUPT = 7  # lake verify: files or manifests that disagree, stray files


class EdgeAgentError(Exception):
    """Base class: a failure the agent explains to its user."""

    exit_code = EXIT_FAILURE


class ConfigError(EdgeAgentError):
    """Invalid configuration; the message names the field, the value and the fix."""

    exit_code = EXIT_USAGE

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"config: {_field_and_value(field, value)}: {fix}")


def toml_value(value: object) -> str:
    """A value as the user wrote it in TOML (``true``, ``"text"``, ``[1, 2]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _field_and_value(field: str, value: object) -> str:
    if isinstance(value, dict):
        return f"[{field}]"  # a whole table: its name says more than its contents
    if value is None:
        return field
    return f"{field} = {toml_value(value)}"


class ConfigErrors(EdgeAgentError):
    """Several configuration errors found in one pass."""

    exit_code = EXIT_USAGE

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class SourceError(EdgeAgentError):
    """A source database cannot be used as configured (missing file, unknown table...)."""


class StateLockedError(EdgeAgentError):
    """Another agent holds the state directory."""

    exit_code = EXIT_LOCKED


class StateError(EdgeAgentError):
    """The state directory or its database is unusable."""


class PendingError(EdgeAgentError):
    """A flush ended with files still waiting to be shipped."""

    exit_code = EXIT_PENDING


class SourceFailingError(EdgeAgentError):
    """A flush shipped everything it had, but a source is failing: its changes are
    not being captured, so "everything shipped" would be untrue."""

    exit_code = EXIT_SOURCE_FAILING


class TransientError(EdgeAgentError):
    """Worth retrying later: sink unreachable, disk full, database busy."""


class TerminalError(EdgeAgentError):
    """Will not succeed by retrying the same thing (bad credentials, missing bucket)."""


class CorruptFileError(EdgeAgentError):
    """A spooled file no longer matches its recorded size or checksum."""
