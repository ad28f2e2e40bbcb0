"""The bandwidth cap paces reads to the configured rate (injected time, no sleeping)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.shippers.throttle import ThrottledReader


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@given(size=st.integers(1, 200_000), rate=st.integers(1_000, 50_000),
       chunk=st.integers(-1, 70_000))
def test_reading_takes_size_over_rate_seconds(size: int, rate: int, chunk: int) -> None:
    t = FakeTime()
    reader = ThrottledReader(io.BytesIO(b"x" * size), rate, t.clock, t.sleep)
    data = b""
    while block := reader.read(chunk if chunk else -1):
        assert len(block) <= rate
        data += block
    assert len(data) == size
    assert abs(t.now - size / rate) < 1e-6


def test_rewinding_restarts_the_budget() -> None:
    t = FakeTime()
    reader = ThrottledReader(io.BytesIO(b"y" * 4000), 1000, t.clock, t.sleep)
    reader.read(4000)
    reader.seek(0)
    start = t.now
    assert reader.read(1000) == b"y" * 1000
    assert t.now - start == 1.0
