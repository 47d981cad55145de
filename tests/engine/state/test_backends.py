"""Every backend keeps the same contract: atomic all-or-nothing holds, exact
settlement, breaker transitions. Run against memory, a SQLite file and redis-server."""

from __future__ import annotations

import asyncio

from turnout.state import BreakerRule, Counter, Hold, Release, StateBackend

FAR = 4e9  # expiry far in the future


async def test_reserve_is_all_or_nothing(backend: StateBackend) -> None:
    assert await backend.reserve([Hold("a", 10, 6, FAR), Hold("b", 10, 6, FAR)]) == -1
    # b would fit, a would not: neither is held
    assert await backend.reserve([Hold("b", 10, 1, FAR), Hold("a", 10, 5, FAR)]) == 1
    assert await backend.read(["a", "b", "never"]) == [Counter(0, 6), Counter(0, 6), Counter()]


async def test_release_moves_holds_to_use(backend: StateBackend) -> None:
    assert await backend.reserve([Hold("a", 10, 8, FAR)]) == -1
    await backend.release([Release("a", 8, 3, FAR)])
    assert await backend.read(["a"]) == [Counter(3, 0)]
    assert await backend.reserve([Hold("a", 10, 7, FAR)]) == -1
    assert await backend.reserve([Hold("a", 10, 1, FAR)]) == 0


async def test_concurrent_reservations_never_overshoot(backend: StateBackend) -> None:
    results = await asyncio.gather(*(backend.reserve([Hold("k", 100, 3, FAR)]) for _ in range(60)))
    assert results.count(-1) == 33
    assert await backend.read(["k"]) == [Counter(0, 99)]


async def test_breaker_opens_half_opens_with_one_probe_and_closes(backend: StateBackend) -> None:
    rule = BreakerRule(failures=3, cooldown=30)
    for t in (1.0, 2.0):
        assert (await backend.breaker("p/m", "failure", t, rule)).state == "closed"
    assert (await backend.breaker("p/m", "failure", 3.0, rule)).state == "open"
    assert not (await backend.breaker("p/m", "check", 10.0, rule)).allowed
    probe = await backend.breaker("p/m", "check", 33.0, rule)
    assert probe.allowed and probe.state == "half_open"
    assert not (await backend.breaker("p/m", "check", 34.0, rule)).allowed  # one probe only
    assert (await backend.breaker("p/m", "success", 35.0, rule)).state == "closed"
    assert (await backend.breaker("p/m", "check", 36.0, rule)).allowed
    assert (await backend.breakers(["p/m"]))[0].get("state") in (None, "closed")


async def test_failed_probe_reopens(backend: StateBackend) -> None:
    rule = BreakerRule(failures=1, cooldown=10)
    await backend.breaker("t", "failure", 0.0, rule)
    assert (await backend.breaker("t", "check", 10.0, rule)).allowed
    assert (await backend.breaker("t", "failure", 11.0, rule)).state == "open"
    assert not (await backend.breaker("t", "check", 20.0, rule)).allowed
    assert (await backend.breaker("t", "check", 21.0, rule)).allowed


async def test_breaker_failure_ratio(backend: StateBackend) -> None:
    rule = BreakerRule(failures=100, ratio=0.5, min_calls=4, window=60)
    for i, event in enumerate(["success", "failure", "success"]):
        assert (await backend.breaker("t", event, float(i), rule)).state == "closed"  # type: ignore[arg-type]
    assert (await backend.breaker("t", "failure", 3.0, rule)).state == "open"  # 2 of 4


async def test_success_resets_consecutive_failures(backend: StateBackend) -> None:
    rule = BreakerRule(failures=2)
    await backend.breaker("t", "failure", 1.0, rule)
    await backend.breaker("t", "success", 2.0, rule)
    assert (await backend.breaker("t", "failure", 3.0, rule)).state == "closed"


async def test_breakers_of_targets_gone_quiet_are_forgotten(make_backend) -> None:  # type: ignore[no-untyped-def]
    """State of a target named once (a direct route's model) does not pile up:
    SQLite drops breakers untouched for BREAKER_IDLE, redis lets them expire."""
    from turnout.state.base import BREAKER_IDLE

    rule = BreakerRule(failures=5, cooldown=30)
    sqlite = make_backend("sqlite")
    for i in range(1024):  # one purge pass every 1024 breaker writes
        now = 1000.0 if i < 1000 else 1000.0 + BREAKER_IDLE + 1
        await sqlite.breaker(f"p/m{i}", "failure", now, rule)
    fields = await sqlite.breakers(["p/m0", "p/m1010"])
    assert fields[0] == {} and fields[1]["fails"] == 1
    await sqlite.aclose()

    redis = make_backend("redis")
    await redis.breaker("p/once", "failure", 1000.0, rule)
    ttl = await redis._redis().pttl(redis.prefix + "b:p/once")  # type: ignore[attr-defined]
    assert 0 < ttl <= BREAKER_IDLE * 1000
    await redis.aclose()
