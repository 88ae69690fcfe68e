"""The risk counters' and rate limiter's scripts run on a real Redis Cluster (issue 13).

A throwaway three-node cluster (``redis-server --cluster-enabled yes`` on free ports, joined by
``redis-cli --cluster create``) runs the scripts through redis-py's cluster client, which sends each script
to the node owning its keys' slot and refuses keys of several slots. The keys' hash tag is the tenant, so
every call lands whole on one node, and tenants spread over the nodes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from core.http import ratelimit
from core.risk import counters
from core.settings import load_settings

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def _free_port_pair() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = secrets.randbelow(20000) + 20000
        ok = True
        for p in (port, port + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair")


@contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        if os.environ.get("KAQUAN_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server and redis-cli are needed for the Redis Cluster test", pytrace=False)
        pytest.skip("redis-server / redis-cli are not installed")
    directory = Path(tempfile.mkdtemp(prefix="kaquan-redis-cluster-"))
    ports = [_free_port_pair() for _ in range(nodes)]
    procs = []
    try:
        for port in ports:
            (directory / str(port)).mkdir()
            procs.append(
                subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
                    cwd=directory / str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        _wait_listening(ports)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        _wait_cluster_ok(cli, ports[0])
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(ports: list[int]) -> None:
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not listen on {port}")
            time.sleep(0.05)


def _wait_cluster_ok(cli: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = subprocess.run([cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True).stdout
        if "cluster_state:ok" in info:
            return
        time.sleep(0.1)
    raise RuntimeError("the Redis cluster did not become ready")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


@pytest.fixture
async def cluster(cluster_url, monkeypatch) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    monkeypatch.setattr(counters, "redis_for", lambda _settings: client)
    yield client
    await client.aclose()


def _specs(limit: int) -> list[counters.CounterSpec]:
    ends = NOW + dt.timedelta(hours=14)
    return [
        counters.CounterSpec(f"grant:member:day:2026-11-23:{secrets.token_hex(8)}", limit, ends),
        counters.CounterSpec(f"grant:ip:day:2026-11-23:{secrets.token_hex(8)}", limit + 5, ends),
    ]


async def test_risk_scripts_count_on_a_cluster(cluster) -> None:
    settings = load_settings(env={}, redis_namespace="kaquan-" + secrets.token_hex(3))
    tenants = [uuid.uuid4() for _ in range(6)]
    for tenant in tenants:
        specs = _specs(2)
        assert [await counters.redis_admit(settings, tenant, specs, 1, NOW) for _ in range(3)] == [-1, -1, 0]
        await counters.redis_give_back(settings, tenant, [s.key for s in specs], 1)
        assert await counters.redis_admit(settings, tenant, specs, 1, NOW) == -1  # the unit given back
        seen = [
            await counters.redis_device_member(settings, tenant, "2026-11-23", "dev1", uuid.uuid4(), 60_000, 2)
            for _ in range(3)
        ]
        assert seen == [(1, False), (2, False), (3, True)]
        failures = [
            await counters.redis_failure(settings, tenant, "ip", "k", NOW, dt.timedelta(minutes=5), 2)
            for _ in range(2)
        ]
        assert failures == [0, 2]
    nodes = {cluster.get_node_from_key(counters.redis_key(settings, t, "c")).name for t in tenants}
    assert len(nodes) > 1  # tenants spread over the nodes


async def test_rate_limit_windows_count_on_a_cluster(cluster) -> None:
    limiter = ratelimit.RateLimiter(namespace="kaquan-" + secrets.token_hex(3))
    limiter.redis = cluster  # type: ignore[assignment]
    limiter._script = cluster.register_script(ratelimit._HIT_LUA)
    tenant = str(uuid.uuid4())
    windows = [(f"tenant:{tenant}", 2), (f"client:{tenant}:c1", 10)]
    decisions = [await limiter.hit(windows, slot=tenant) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]


async def test_keys_without_the_tenant_tag_are_refused_by_a_cluster(cluster) -> None:
    """What the hash tags prevent: the layout before them put one call's keys in several slots."""
    keys = ["kaquan:risk:t:c:grant:member:day:x", "kaquan:risk:t:c:grant:ip:day:y"]
    assert key_slot(keys[0].encode()) != key_slot(keys[1].encode())
    # refused by the client, or (as here when it sends it on) by the node: "CROSSSLOT Keys in request don't hash
    # to the same slot"
    with pytest.raises((RedisClusterException, ClusterCrossSlotError)):
        await cluster.eval(counters._ADMIT_LUA, 2, *keys, 1, 5, 5, 60_000, 60_000)
