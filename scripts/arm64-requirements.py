#!/usr/bin/env python3
"""Print the pip requirements of the arm64 test environment, one per line: the
project's runtime dependencies and the extras named on the command line (default:
test), read from pyproject.toml so the arm64 list never drifts from it."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return list(dict.fromkeys(wanted))


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:] or ["test"])))
