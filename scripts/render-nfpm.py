#!/usr/bin/env python3
"""Print packaging/nfpm.yaml (or the file given) with its ${VARIABLES} filled from the
environment; a variable that is not set is an error (nfpm itself expands only some
fields, and a path left as "${DEB_STAGE}/..." would fail late)."""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path


def render(template: str, env: dict[str, str]) -> str:
    return string.Template(template).substitute(env)


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "packaging/nfpm.yaml")
    try:
        print(render(source.read_text(encoding="utf-8"), dict(os.environ)), end="")
    except KeyError as missing:
        sys.exit(f"{source}: variable {missing} is not set")
