"""One bench session: a scratch directory and pre-filled template databases, made once.

Filling a change log takes seconds, so each (tables, changes) template is made
once per session and copied (then synced to disk) for every run that consumes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench import app
from bench.common import Mode, log


class Session:
    def __init__(self, mode: Mode, root: Path) -> None:
        self.mode = mode
        self.root = root
        self.templates: dict[tuple[int, int], Path] = {}
        self.fill_seconds: dict[str, float] = {}
        self.kept: dict[str, Path] = {}  # outputs one scenario leaves for another

    def template(self, tables: int, changes: int) -> Path:
        key = (tables, changes)
        if key not in self.templates:
            db = self.root / "templates" / f"t{tables}-c{changes}" / "app.db"
            db.parent.mkdir(parents=True, exist_ok=True)
            seconds = app.filled_log(db, app.table_names(tables), changes)
            self.fill_seconds[f"{changes:,} changes over {tables} table(s)"] = seconds
            log(f"filled a change log: {changes:,} changes over {tables} table(s) "
                f"in {seconds:.1f}s")
            self.templates[key] = db
        return self.templates[key]

    def fresh_db(self, tables: int, changes: int, dest_dir: Path) -> Path:
        """A private copy of a template, written back to disk before it is measured."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        db = app.copy_db(self.template(tables, changes), dest_dir / "app.db")
        os.sync()
        return db

    def scratch(self, name: str) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path
