"""The per-process connector caches drop expired entries instead of keeping every account ever seen."""

from __future__ import annotations

import time
import uuid

from core.connectors import calls


def test_remembering_a_route_drops_the_expired_ones_when_the_cache_is_full(monkeypatch):
    monkeypatch.setattr(calls, "routes", {})
    stale = time.monotonic() - calls.BIND_TTL - 1
    tenant = uuid.uuid4()
    for _ in range(calls.CACHE_PRUNE_AT):
        calls.routes[uuid.uuid4()] = (stale, tenant)
    fresh = uuid.uuid4()
    calls.routes[fresh] = (time.monotonic(), tenant)
    added = uuid.uuid4()
    calls.remember_route(added, tenant)
    assert set(calls.routes) == {fresh, added}
    assert calls.routes[added][1] == tenant


def test_a_small_cache_keeps_its_entries(monkeypatch):
    monkeypatch.setattr(calls, "routes", {})
    stale_account = uuid.uuid4()
    calls.routes[stale_account] = (time.monotonic() - calls.BIND_TTL - 1, uuid.uuid4())
    calls.remember_route(uuid.uuid4(), uuid.uuid4())
    assert stale_account in calls.routes  # below the threshold nothing is scanned; a read re-checks the age
