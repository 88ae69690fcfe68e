"""Property tests of version choice: the version in force at a time is the latest ``valid_from`` at or before
it (then the highest version), and versions created later for a later time never change what an order
already placed gets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from core.splits.rules import latest_in_force

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class V:
    valid_from: dt.datetime
    version: int


OFFSETS = st.lists(st.integers(0, 100), max_size=12)


def _versions(offsets: list[int]) -> list[V]:
    return [V(T0 + dt.timedelta(days=d), i + 1) for i, d in enumerate(offsets)]


@settings(max_examples=300, deadline=None)
@given(OFFSETS, st.integers(-5, 105))
def test_the_version_in_force_is_the_latest_started(offsets: list[int], day: int) -> None:
    versions = _versions(offsets)
    at = T0 + dt.timedelta(days=day)
    got = latest_in_force(versions, at)
    started = [v for v in versions if v.valid_from <= at]
    if not started:
        assert got is None
        return
    assert got is not None and got.valid_from <= at
    assert all((v.valid_from, v.version) <= (got.valid_from, got.version) for v in started)


@settings(max_examples=300, deadline=None)
@given(OFFSETS, st.integers(0, 100), st.lists(st.integers(1, 50), max_size=5))
def test_later_versions_never_change_an_order_already_placed(offsets: list[int], day: int,
                                                             later: list[int]) -> None:
    versions = _versions(offsets)
    placed = T0 + dt.timedelta(days=day)
    before = latest_in_force(versions, placed)
    more = versions + [V(placed + dt.timedelta(days=d), len(versions) + i + 1) for i, d in enumerate(later)]
    assert latest_in_force(more, placed) == before
    # whatever order the versions come in
    assert latest_in_force(list(reversed(more)), placed) == before
