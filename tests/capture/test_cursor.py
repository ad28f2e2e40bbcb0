"""Property tests of the timestamp cursor against a simple reference model:
random cursor values with ties, late commits inside the lag window, random
polls, seals and crashes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.capture.cursor import Checkpoint, CursorState

LAG = 10
EVENTS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2)),  # key, step, delay
    min_size=1, max_size=60,
)
ACTIONS = st.lists(st.sampled_from(["poll", "seal", "crash", "none", "none"]), max_size=200)


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
    assert len(state.emitted) == len(durable.seen)
    assert state.low_bound() == 1099 - LAG


def test_checkpoint_round_trips_keys_of_every_sqlite_type() -> None:
    seen = frozenset({((1, "a"), 5), ((b"\x00\xff", 2.5), 6), ((None, "b64"), 7)})
    point = Checkpoint(7, seen, 9)
    assert Checkpoint.from_json(point.to_json()) == point
