"""Remote configuration on disk: the last good config, the candidate, what was refused.

``<state_dir>/remote/`` holds JSON files, each written atomically (temp file,
fsync, rename, fsync of the directory):

- ``last-good.json``: the remote config the agent runs when it starts (its
  version, sha256, signer, when it was applied, the TOML text);
- ``candidate.json``: a config being applied. Present at start-up means the
  agent stopped during the apply or its health window: it is rolled back
  (never kept half-applied) and its version refused from then on;
- ``refused.json``: versions rolled back or rejected, with why: the retained
  desired document is not applied again until a newer version is pushed;
- ``trusted-keys.json``: keys installed by a signed ``trust-keys`` command;
  they replace the config file's ``trusted_keys``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_agent.fsutil import ensure_dir, remove_durably, write_atomic

MAX_REFUSED = 100


@dataclass(frozen=True)
class Applied:
    version: int
    sha256: str
    key_id: str
    applied_ms: int
    config: str
    scope: str = "device"  # device | group: a device document wins over its group's

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "scope": self.scope}


class ConfigStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "remote"

    def _read(self, name: str) -> Any:
        try:
            return json.loads((self.dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # damaged: treated as absent (the local config file runs)

    def _write(self, name: str, value: Any) -> None:
        ensure_dir(self.dir)
        write_atomic(self.dir / name, json.dumps(value, sort_keys=True).encode())

    # -- the config ---------------------------------------------------------
    def last_good(self) -> Applied | None:
        return _applied(self._read("last-good.json"))

    def candidate(self) -> Applied | None:
        return _applied(self._read("candidate.json"))

    def begin(self, candidate: Applied) -> None:
        """Durably: this config is being applied."""
        self._write("candidate.json", asdict(candidate))

    def promote(self) -> Applied | None:
        """The candidate ran healthy through its window: it is the last good config."""
        cand = self.candidate()
        if cand is not None:
            self._write("last-good.json", asdict(cand))
            remove_durably([self.dir / "candidate.json"])
        return cand

    def abandon(self, reason: str) -> Applied | None:
        """Roll the candidate back: refuse its version from now on."""
        cand = self.candidate()
        if cand is not None:
            self.refuse(cand.version, cand.scope, reason)
            remove_durably([self.dir / "candidate.json"])
        return cand

    def refuse(self, version: int, scope: str, reason: str) -> None:
        refused = self.refused()
        refused[f"{scope}:{version}"] = reason
        kept = dict(list(refused.items())[-MAX_REFUSED:])
        self._write("refused.json", kept)

    def refused(self) -> dict[str, str]:
        found = self._read("refused.json")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    # -- keys ---------------------------------------------------------------
    def trusted_keys(self) -> tuple[str, ...] | None:
        found = self._read("trusted-keys.json")
        if isinstance(found, dict) and isinstance(found.get("keys"), list) and found["keys"]:
            return tuple(str(k) for k in found["keys"])
        return None

    def set_trusted_keys(self, keys: tuple[str, ...], by: str, now_ms: int) -> None:
        self._write("trusted-keys.json", {"keys": list(keys), "by": by, "at_ms": now_ms})


def _applied(data: Any) -> Applied | None:
    if not isinstance(data, dict):
        return None
    try:
        return Applied(
            int(data["version"]),
            str(data["sha256"]),
            str(data["key_id"]),
            int(data["applied_ms"]),
            str(data["config"]),
            str(data.get("scope", "device")),
        )
    except (KeyError, TypeError, ValueError):
        return None
