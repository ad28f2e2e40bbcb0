"""The project's build backend: setuptools, plus one environment switch.

EDGE_AGENT_MYPYC=1 compiles the modules listed in packaging/mypyc-modules.txt with
mypyc (a platform wheel, cp3XX-manylinux); unset or 0 builds the pure py3-none-any
wheel from the same code. The switch only adds mypy (which ships mypyc) to the build
requirements; setup.py does the compiling. docs/packaging.md has the measurement
that decides which wheel is shipped.
"""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the whole PEP 517/660 interface)

MYPYC_REQUIREMENT = "mypy==2.4.1"  # the same mypy the type check pins


def compiled() -> bool:
    return os.environ.get("EDGE_AGENT_MYPYC", "0") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, object] | None = None) -> list[str]:
    if not compiled():
        return list(_setuptools.get_requires_for_build_wheel(config_settings))
    # setuptools runs setup.py to answer, and setup.py needs mypyc only to build:
    # ask with the switch off, then add mypy.
    os.environ["EDGE_AGENT_MYPYC"] = "0"
    try:
        requires = list(_setuptools.get_requires_for_build_wheel(config_settings))
    finally:
        os.environ["EDGE_AGENT_MYPYC"] = "1"
    return [*requires, MYPYC_REQUIREMENT]
