"""The config an agent runs: the local file, or its last good remote config merged with
the local file's [agent] and [control] (docs/remote.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edge_agent.config import Config, load_config
from edge_agent.control.store import ConfigStore
from edge_agent.errors import ConfigErrors
from edge_agent.log import get_logger

log = get_logger("edge_agent.remote")


def load_effective(path: Path, environ: Mapping[str, str]) -> Config:
    cfg = load_config(path, environ)
    if cfg.control is None:
        return cfg
    last = ConfigStore(cfg.agent.state_dir).last_good()
    if last is None:
        return cfg
    try:
        return load_config(path, environ, remote=last.config)
    except ConfigErrors as exc:
        # A last good config that no longer loads here (its password file went away, an
        # environment override changed...): the local file runs, and says so.
        log.error("remote.last_good_unusable", version=last.version, error=str(exc))
        return cfg
