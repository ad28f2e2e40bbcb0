"""A batch's change times split into runs of one UTC day: the fast path (min and max on
one day) must give exactly what the per-row walk gives, whatever the clock did."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.clock import DAY_MS, split_by_day
from edge_agent.runtime.pipeline import day_runs

MIN_VALID = 1_600_000_000_000
MIDNIGHT = MIN_VALID + 20 * DAY_MS - MIN_VALID % DAY_MS
# change times near a midnight and near the "clock not synced" bound, in any order
# (a clock that steps back, rows from an unsynced boot)
TIMES = st.one_of(
    st.integers(MIDNIGHT - 5_000, MIDNIGHT + 5_000),
    st.integers(MIN_VALID - 5_000, MIN_VALID + 5_000),
    st.integers(0, 10_000),
)


@given(st.lists(TIMES, min_size=1, max_size=40), st.integers(0, 3))
def test_day_runs_equal_the_per_row_walk(times: list[int], offset: int) -> None:
    array = pa.array([0] * offset + times, pa.int64()).slice(offset)  # a sliced column too
    assert day_runs(array, MIN_VALID) == split_by_day(times, MIN_VALID)


def test_a_clock_step_back_across_midnight_inside_one_day_is_still_split() -> None:
    """First and last change on the same day, the middle on the day before: a check of
    only the first and the last change would put the middle in the wrong partition."""
    times = [MIDNIGHT + 10, MIDNIGHT - 10, MIDNIGHT + 20]
    assert day_runs(pa.array(times, pa.int64()), MIN_VALID) == [(0, 1), (1, 2), (2, 3)]


def test_nulls_take_the_per_row_walk() -> None:
    assert day_runs(pa.array([MIDNIGHT, None], pa.int64()), MIN_VALID) == [(0, 1), (1, 2)]
