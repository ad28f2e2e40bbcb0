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

    return list(mypycify(mypyc_modules(), opt_level="3"))


setup(ext_modules=ext_modules())
