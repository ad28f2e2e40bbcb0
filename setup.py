"""Only the optional mypyc step of the build (packaging/backend/edge_agent_build.py);
everything else about the package is in pyproject.toml."""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup


def mypyc_modules() -> list[str]:
    listing = Path(__file__).parent / "packaging" / "mypyc-modules.txt"
    lines = (line.split("#", 1)[0].strip() for line in listing.read_text().splitlines())
    return [line for line in lines if line]


def ext_modules() -> list[object]:
    if os.environ.get("EDGE_AGENT_MYPYC", "0") != "1":
        return []
    from mypyc.build import mypycify

    # The compiled modules are type-checked as `mypy --strict` does; the modules they
    # import are read silently (the build environment lacks optional packages such as
    # psycopg, whose absence `make typecheck` would report).
    options = ["--follow-imports=silent", "--ignore-missing-imports"]
    return list(mypycify([*options, *mypyc_modules()], opt_level="3"))


setup(ext_modules=ext_modules())
