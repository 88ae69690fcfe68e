"""Every Redis script kaquan runs over several keys keeps them in one Redis Cluster slot (issue 13).

A Lua script on Redis Cluster may only touch keys of one hash slot, and only the keys it is given. Risk
counters (``core.risk.counters``) and rate-limit windows (``core.http.ratelimit``) tag their keys with the
tenant (``{<tenant id>}``), so each call's keys share a slot. The slot is computed as Redis Cluster does,
CRC16 of the hash tag (``redis.crc.key_slot``). The calls are recorded from the real functions with a
stand-in client; a new script in those modules that no test here calls fails ``test_every_script_is_covered``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from redis.crc import key_slot

from core.http import ratelimit
from core.risk import counters
from core.settings import load_settings

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
TENANT = uuid.UUID("0196a5f0-0000-7000-8000-000000000001")

#: Scripts that deliberately span slots, with the reason.
EXEMPT = {
    "_LEGACY_MOVE_LUA": "the upgrade from the layout before hash tags: runs on the single Redis that held it",
}


def _scripts(module: Any) -> dict[str, str]:
    return {name: value for name, value in vars(module).items() if name.endswith("_LUA") and isinstance(value, str)}


SCRIPTS = {**_scripts(counters), **_scripts(ratelimit)}
NAMES = {text: name for name, text in SCRIPTS.items()}


class Recorder:
    """A stand-in Redis client: records (script name, keys) of every EVAL and answers like the script."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        name = NAMES[script]
        self.calls.append((name, [str(k) for k in keys_and_args[:numkeys]]))
        return [1, 0] if name == "_DEVICE_LUA" else 0

    def script(self, text: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> list[int]:
            self.calls.append((NAMES[text], list(keys)))
            return [1, 60] * len(keys)

        return run


@pytest.fixture
def recorded(monkeypatch) -> tuple[Recorder, Any]:
    recorder = Recorder()
    monkeypatch.setattr(counters, "redis_for", lambda _settings: recorder)
    settings = load_settings(env={}, redis_url="redis://127.0.0.1:1/0", redis_namespace="kaquan")
    return recorder, settings


async def _run_every_call(recorder: Recorder, settings: Any) -> None:
    day_end, month_end = NOW + dt.timedelta(hours=14), NOW + dt.timedelta(days=8)
    specs = [
        counters.CounterSpec("grant:member:day:2026-11-23:" + "a" * 64, 3, day_end),
        counters.CounterSpec("grant:member:month:2026-11:" + "a" * 64, 10, month_end),
        counters.CounterSpec("grant:ip:day:2026-11-23:" + "b" * 64, 50, day_end),
        counters.CounterSpec("grant:device:day:2026-11-23:" + "c" * 64, 5, day_end),
    ]
    assert await counters.redis_admit(settings, TENANT, specs, 1, NOW) == -1
    await counters.redis_give_back(settings, TENANT, [s.key for s in specs], 1)
    await counters.redis_failure(settings, TENANT, "ip", "b" * 64, NOW, dt.timedelta(minutes=10), 5)
    await counters.redis_device_member(settings, TENANT, "2026-11-23", "c" * 64, uuid.uuid4(), 86_400_000, 3)
    limiter = ratelimit.RateLimiter()
    limiter.redis = recorder  # type: ignore[assignment]
    limiter._script = recorder.script(ratelimit._HIT_LUA)
    windows = [(f"tenant:{TENANT}", 600), (f"client:{TENANT}:{uuid.uuid4()}", 100)]
    assert (await limiter.hit(windows, slot=str(TENANT))).allowed


async def test_every_multi_key_call_stays_in_one_slot(recorded) -> None:
    recorder, settings = recorded
    await _run_every_call(recorder, settings)
    multi = [(name, keys) for name, keys in recorder.calls if len(keys) > 1]
    assert {name for name, _ in multi} == {"_ADMIT_LUA", "_GIVE_BACK_LUA", "_DEVICE_LUA", "_HIT_LUA"}
    tenant_slot = key_slot(str(TENANT).encode())
    for name, keys in recorder.calls:
        slots = {key_slot(k.encode()) for k in keys}
        assert slots == {tenant_slot}, f"{name} spans slots {slots}: {keys}"
        assert all(f"{{{TENANT}}}" in k and k.startswith("kaquan:") for k in keys), keys


async def test_every_script_is_covered(recorded) -> None:
    recorder, settings = recorded
    await _run_every_call(recorder, settings)
    assert {name for name, _ in recorder.calls} | set(EXEMPT) == set(SCRIPTS)


def test_two_tenants_spread_over_slots() -> None:
    """The tag is the tenant, not the namespace: tenants spread over the cluster."""
    settings = load_settings(env={}, redis_namespace="kaquan")
    tenants = [uuid.UUID(int=i) for i in range(1, 50)]
    slots = {key_slot(counters.redis_key(settings, t, "c", "x").encode()) for t in tenants}
    assert len(slots) > 40


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - set(EXEMPT)))
def test_scripts_touch_only_the_keys_they_are_given(name: str) -> None:
    """Cluster routes a script by its KEYS: a key built inside the script could live on another node."""
    text = SCRIPTS[name]
    calls = re.findall(r"redis\.call\(\s*'(\w+)'\s*,\s*([^,)]+)", text)
    assert calls
    loop_vars = set(re.findall(r"for\s+\w+\s*,\s*(\w+)\s+in\s+ipairs\(KEYS\)", text))
    for command, key in calls:
        key = key.strip()
        assert re.fullmatch(r"KEYS\[[^\]]+\]", key) or key in loop_vars, f"{name}: {command} {key}"


def test_the_slot_is_computed_as_redis_cluster_does() -> None:
    """Known values of the Redis Cluster spec (CRC16/XMODEM mod 16384), and the tag rule."""
    assert key_slot(b"123456789") == 0x31C3 % 16384
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == key_slot(b"user1000")
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")  # an empty tag: the whole key is hashed
