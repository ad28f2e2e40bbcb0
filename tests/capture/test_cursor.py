"""Property tests of the timestamp cursor against a simple reference model:
random cursor values with ties, late commits inside the lag window, random
polls, seals and crashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.capture.cursor import Checkpoint, CursorState

LAG = 10
EVENTS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2)),  # key, step, delay
    min_size=1, max_size=60,
)
ACTIONS = st.lists(st.sampled_from(["poll", "seal", "crash", "none", "none"]), max_size=200)
PAGED_ACTIONS = st.lists(
    st.one_of(st.sampled_from(["crash", "none", "none"]),
              st.tuples(st.just("poll"), st.integers(1, 4)),  # page size
              st.tuples(st.just("seal"), st.integers(0, 4))),  # rows of the last page kept out
    max_size=200,
)


class Model:
    """The table as the agent would see it at each moment."""

    def __init__(self, events: list[tuple[int, int, int]]) -> None:
        cursor = 1_000
        self.events = []
        for index, (key, step, delay) in enumerate(events):
            cursor += step  # ties when step == 0
            self.events.append((index + delay * 0.5, index, key, cursor))  # delayed commit
        self.events.sort()
        self.visible = 0

    def commit_next(self) -> bool:
        if self.visible < len(self.events):
            self.visible += 1
        return self.visible < len(self.events)

    def rows(self) -> dict[int, int]:
        """key -> cursor of the row version committed last."""
        table: dict[int, int] = {}
        for _, _, key, cursor in self.events[: self.visible]:
            table[key] = cursor
        return table


def poll(state: CursorState, model: Model) -> list[tuple[int, tuple[int], int, None]]:
    low = state.low_bound()
    window = sorted((c, k) for k, c in model.rows().items() if low is None or c >= low)
    return state.accept(((k,), c, None) for c, k in window)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, actions=ACTIONS)
def test_every_final_version_once_no_repeats(events, actions) -> None:
    model = Model(events)
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    lake: list[tuple[tuple[int], int]] = []
    pending: list[tuple[int, tuple[int], int]] = []  # emitted, not yet sealed

    def seal() -> None:
        nonlocal pending
        if pending:
            last = max(p for p, _, _ in pending)
            lake.extend((k, c) for _, k, c in pending)
            pending = []
            durable = state.sealed_up_to(last)
            assert Checkpoint.from_json(durable.to_json()) == durable

    for action in actions:
        model.commit_next()
        if action == "poll":
            pending += [(p, k, c) for p, k, c, _ in poll(state, model)]
        elif action == "seal":
            seal()
        elif action == "crash":  # unsealed emissions are lost; state reloads from disk
            pending = []
            state = CursorState(LAG, Checkpoint.from_json(state.durable.to_json()))
    while model.commit_next():
        pass
    for _ in range(2):
        pending += [(p, k, c) for p, k, c, _ in poll(state, model)]
        seal()
    assert len(lake) == len(set(lake)), "a version was emitted twice"
    final = {((k,), c) for k, c in model.rows().items()}
    assert final <= set(lake), "the final version of a row is missing"


def paged_poll(state: CursorState, model: Model, limit: int) -> list[tuple[int, tuple[int], int]]:
    """One poll read page by page, as the pipeline does: ``(cursor, key) > after``."""
    low = state.low_bound()
    rows = sorted((c, k) for k, c in model.rows().items() if low is None or c >= low)
    out = []
    for start in range(0, len(rows), limit):
        page = [((k,), c, None) for c, k in rows[start:start + limit]]
        out += [(p, k, c) for p, k, c, _ in state.accept(page)]
    return out


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, actions=PAGED_ACTIONS)
def test_pages_and_seals_inside_the_newest_page_lose_and_repeat_nothing(events, actions) -> None:
    """The writer seals a file while a page is written (a byte cap inside the page): the
    checkpoint of any position of the newest page keeps the lake exact."""
    model = Model(events)
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    lake: list[tuple[tuple[int], int]] = []
    pending: list[tuple[int, tuple[int], int]] = []

    for action in actions:
        model.commit_next()
        if action == "crash":
            pending = []
            state = CursorState(LAG, Checkpoint.from_json(state.durable.to_json()))
        elif isinstance(action, tuple) and action[0] == "poll":
            pending += paged_poll(state, model, action[1])
        elif isinstance(action, tuple) and pending:
            # A file ends anywhere in the newest page or after it (the writer's byte cap).
            newest = state.latest.accepted.first_pos if state.latest else state.next_pos
            positions = [p for p, _, _ in pending]
            last = max(max(positions) - action[1], newest - 1, min(positions))
            lake.extend((k, c) for p, k, c in pending if p <= last)
            pending = [e for e in pending if e[0] > last]
            durable = state.sealed_up_to(last)
            assert Checkpoint.from_json(durable.to_json()) == durable
    while model.commit_next():
        pass
    for _ in range(2):
        pending += paged_poll(state, model, 3)
        if pending:
            lake.extend((k, c) for _, k, c in pending)
            state.sealed_up_to(max(p for p, _, _ in pending))
            pending = []
    assert len(lake) == len(set(lake)), "a version was emitted twice"
    assert {((k,), c) for k, c in model.rows().items()} <= set(lake), "a final version is missing"
    assert all(c >= state.top - LAG for _, c in state.window), "memory beyond the lag window"


def test_equal_cursor_values_split_across_polls() -> None:
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    first = state.accept([((1,), 5000, "a"), ((2,), 5000, "b")])
    second = state.accept([((1,), 5000, "a"), ((2,), 5000, "b"), ((3,), 5000, "c")])
    assert [k for _, k, _, _ in first] == [(1,), (2,)]
    assert [k for _, k, _, _ in second] == [(3,)]
    assert [p for p, _, _, _ in first + second] == [1, 2, 3]


def test_window_and_memory_shrink_after_sealing() -> None:
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    state.accept([((k,), 1000 + k, None) for k in range(100)])
    durable = state.sealed_up_to(100)
    assert durable.watermark == 1099
    assert all(c >= 1099 - LAG for _, c in durable.seen)
    assert state.low_bound() == 1099 - LAG


def test_memory_holds_the_lag_window_not_the_backlog() -> None:
    """A one-shot load of 100,000 rows, nothing sealed until the end: only the pairs
    inside the lag window stay in memory, and the final checkpoint is exact."""
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    for start in range(0, 100_000, 5000):
        state.accept([((k,), 1000 + k, None) for k in range(start, start + 5000)])
        assert len(state.window) <= LAG + 1
    durable = state.sealed_up_to(100_000)
    assert durable.watermark == 100_999
    assert durable.seen == {((k,), 1000 + k) for k in range(99_999 - LAG, 100_000)}


def test_seal_inside_the_newest_page_keeps_its_exact_watermark() -> None:
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    state.accept([((k,), 1000 + k, None) for k in range(50)])
    state.accept([((k,), 1000 + k, None) for k in range(50, 100)])
    point = state.checkpoint_for(70)  # a byte cap sealed the file at row 70
    assert point.watermark == 1069 and point.next_pos == 71
    assert point.seen == {((k,), 1000 + k) for k in range(69 - LAG, 70)}


def test_seal_before_the_newest_page_is_refused_not_guessed() -> None:
    state = CursorState(LAG, Checkpoint(None, frozenset(), 1))
    state.accept([((k,), 1000 + k, None) for k in range(50)])
    state.accept([((k,), 1000 + k, None) for k in range(50, 100)])
    assert state.checkpoint_for(50).watermark == 1049  # the newest page's start: exact
    with pytest.raises(ValueError, match="before the newest page"):
        state.checkpoint_for(20)


def test_checkpoint_round_trips_keys_of_every_sqlite_type() -> None:
    seen = frozenset({((1, "a"), 5), ((b"\x00\xff", 2.5), 6), ((None, "b64"), 7)})
    point = Checkpoint(7, seen, 9)
    assert Checkpoint.from_json(point.to_json()) == point
