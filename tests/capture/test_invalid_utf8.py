"""Invalid UTF-8 stored as TEXT by the application must not stall its whole source."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import make_config
from tests.lake import read_changes


def test_invalid_utf8_text_is_captured_and_the_rest_goes_on(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = sqlite3.connect(app_db)
    con.execute("INSERT INTO events (id, kind) VALUES (1, 'ok')")
    con.execute("INSERT INTO events (id, kind) VALUES (2, CAST(X'FF41' AS TEXT))")
    con.execute("INSERT INTO events (id, kind) VALUES (3, 'ok')")
    con.commit()
    con.close()
    summary = h.step(advance=2.0)
    # today: "state database failed (Could not decode to UTF-8 ...)" - the error comes
    # from the source's cursor (fetchmany outside map_error) and names the wrong database
    assert not any("state database" in e for e in summary.errors), summary.errors
    assert h.flush().ok
    ids = sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake"))
    assert ids == [1, 2, 3]  # row 2's bytes exactly (e.g. via _unfit as a blob)
