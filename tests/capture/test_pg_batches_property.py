"""Property test of commit-order batches against a real PostgreSQL: any interleaving of
several transactions (writes, commits and rollbacks in any order, agent reads between
them) lands every committed change once, in positions 1..N, and the lake rebuilds the
table. Each connection writes its own keys, so no step waits on a row lock."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.capture.test_pg_trigger import lake_state, pg_config, rows_of, sql
from tests.lake import read_changes

CONNECTIONS = 3
Op = tuple[str, int, int]  # (write | commit | rollback | read, connection, value)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, CONNECTIONS - 1), st.integers(0, 4)),
        st.tuples(st.sampled_from(["commit", "rollback"]), st.integers(0, CONNECTIONS - 1),
                  st.just(0)),
        st.tuples(st.just("read"), st.just(0), st.just(0)),
    ),
    min_size=1, max_size=40,
)


# T0 takes the lowest sequence number and commits last, in a later batch that also holds
# a higher number than the batch before it: a reader that trusts sequence order, or that
# lets a batch's window take an earlier batch's change, loses or doubles one.
LATE_LOW_SEQUENCE: list[Op] = [("write", 0, 0), ("write", 1, 0), ("commit", 1, 0),
                               ("read", 0, 0), ("write", 2, 0), ("commit", 0, 0),
                               ("commit", 2, 0), ("read", 0, 0)]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(schedule=LATE_LOW_SEQUENCE)
@example(schedule=[("write", 0, 1), ("write", 1, 1), ("read", 0, 0), ("rollback", 0, 0),
                   ("write", 0, 1), ("commit", 1, 0), ("read", 0, 0), ("commit", 0, 0)])
@given(schedule=ops)
def test_any_interleaving_lands_every_committed_change_once_in_commit_order(
        tmp_path_factory: Any, postgres: Any, harness_factory: Any,
        schedule: list[Op]) -> None:
    tmp = Path(tmp_path_factory.mktemp("prop"))
    dsn = postgres.create_database(f"p{uuid.uuid4().hex[:12]}")
    sql(dsn, "CREATE TABLE items (id int PRIMARY KEY, v int)")
    h = harness_factory(pg_config(tmp, dsn, ["items"], source={"page_rows": 3}))
    h.step(0.1)
    cons = [psycopg.connect(dsn) for _ in range(CONNECTIONS)]
    pending = [0] * CONNECTIONS
    committed = 0
    try:
        for op, c, value in schedule:
            if op == "write":  # keys 10c..10c+4: this connection's own rows
                cur = cons[c].execute(
                    "INSERT INTO items VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = "
                    "items.v + 1", (10 * c + value, value))
                pending[c] += cur.rowcount
            elif op == "commit":
                cons[c].commit()
                committed, pending[c] = committed + pending[c], 0
            elif op == "rollback":
                cons[c].rollback()
                pending[c] = 0
            else:
                h.step(0.05)
        for c, con in enumerate(cons):
            con.commit()
            committed, pending[c] = committed + pending[c], 0
    finally:
        for con in cons:
            con.close()
    h.step(0.1)
    assert h.flush().pending_files == 0
    h.close()
    changes = read_changes(tmp / "lake")
    assert [c["_pos"] for c in changes] == list(range(1, committed + 1))
    assert lake_state(tmp, "public.items") == rows_of(dsn, "items")
