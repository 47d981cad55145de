"""Redis state: shared by every gateway replica; the scale-out path.

Each operation is one Lua script, so Redis runs its check and its update as
one step that no other client can interleave with: a reservation that fits is
held before any other replica can look. One round trip per operation, with
redis-py's asyncio client (scripts by SHA, reloaded on NOSCRIPT).

Keys: ``<prefix>c:<counter>`` hashes (``used``, ``held``) expiring after their
window, ``<prefix>b:<target>`` breaker hashes, and ``<prefix>d:<key>`` document
strings expiring when their TTL ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from turnout.state.base import (
    BREAKER_IDLE,
    BreakerEvent,
    BreakerRule,
    BreakerState,
    Counter,
    Hold,
    Release,
    StateBackend,
    StateUnavailable,
)

__all__ = ["RedisState"]

# KEYS: counters. ARGV: limit, amount, expire-at (ms) for each key, in order.
RESERVE = """
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'used', 'held')
  local total = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) + tonumber(ARGV[3 * i - 1])
  if total > tonumber(ARGV[3 * i - 2]) then return i - 1 end
end
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'held', ARGV[3 * i - 1])
  redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
end
return -1
"""

# KEYS: counters. ARGV: minus the held amount, the used amount, expire-at (ms).
RELEASE = """
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'held', ARGV[3 * i - 2])
  redis.call('HINCRBY', KEYS[i], 'used', ARGV[3 * i - 1])
  redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
end
return 0
"""

# The rules of engine.state.base.transition, in Lua. KEYS[1]: the breaker.
# ARGV: event, now, failures, ratio (-1: none), min_calls, window, cooldown, idle (ms):
# every write sets the key to expire that long after it (BREAKER_IDLE).
BREAKER = """
local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local state = h['state'] or 'closed'
local event = ARGV[1]
local now = tonumber(ARGV[2])
local function open()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  return {'open', 0}
end
if event == 'check' then
  if state == 'closed' then return {'closed', 1} end
  local since
  if state == 'open' then since = now - tonumber(h['opened'] or 0)
  else since = now - tonumber(h['probe'] or 0) end
  if since < tonumber(ARGV[7]) then return {state, 0} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  return {'half_open', 1}
end
if event == 'failure' and state ~= 'closed' then return open() end
if event == 'success' and state ~= 'closed' then
  redis.call('DEL', KEYS[1])
  return {'closed', 1}
end
local win = tonumber(h['win'] or 0)
local n = tonumber(h['n'] or 0)
local nf = tonumber(h['nf'] or 0)
if now - win >= tonumber(ARGV[6]) then win = now; n = 0; nf = 0 end
n = n + 1
local fails = 0
if event == 'failure' then
  nf = nf + 1
  fails = tonumber(h['fails'] or 0) + 1
  local ratio = tonumber(ARGV[4])
  if fails >= tonumber(ARGV[3]) or (ratio >= 0 and n >= tonumber(ARGV[5]) and nf / n >= ratio) then
    return open()
  end
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'fails', fails,
           'win', tostring(win), 'n', n, 'nf', nf)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {'closed', 1}
"""

_FLOAT_FIELDS = ("opened", "probe", "win")


class RedisState(StateBackend):
    name = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "turnout:",
        timeout: float = 1.0,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.prefix = prefix
        self.timeout = timeout
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout * 5,  # waiting for a free connection of the pool
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                decode_responses=True,
            )
            client = aioredis.Redis(connection_pool=pool)
            self._scripts = {
                "reserve": client.register_script(RESERVE),
                "release": client.register_script(RELEASE),
                "breaker": client.register_script(BREAKER),
            }
            self._client = client
        return self._client

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self._redis()
        try:
            return await self._scripts[script](keys=keys, args=args)
        except Exception as exc:  # redis-py raises RedisError, OSError, TimeoutError ...
            raise StateUnavailable(f"redis {script}: {type(exc).__name__}: {exc}") from exc

    async def reserve(self, holds: Sequence[Hold]) -> int:
        args: list[Any] = []
        for h in holds:
            args += [h.limit, h.amount, int(h.expires * 1000)]
        return int(await self._call("reserve", [self.prefix + "c:" + h.key for h in holds], args))

    async def release(self, releases: Sequence[Release]) -> None:
        args: list[Any] = []
        for r in releases:
            args += [-r.held, r.used, int(r.expires * 1000)]
        await self._call("release", [self.prefix + "c:" + r.key for r in releases], args)

    async def read(self, keys: Sequence[str]) -> list[Counter]:
        client = self._redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self.prefix + "c:" + key, "used", "held")
                rows = await pipe.execute()
        except Exception as exc:
            raise StateUnavailable(f"redis read: {type(exc).__name__}: {exc}") from exc
        return [Counter(int(used or 0), int(held or 0)) for used, held in rows]

    async def breaker(
        self, target: str, event: BreakerEvent, now: float, rule: BreakerRule
    ) -> BreakerState:
        ratio = -1 if rule.ratio is None else rule.ratio
        args = [
            event, repr(now), rule.failures, ratio, rule.min_calls, rule.window, rule.cooldown,
            int(BREAKER_IDLE * 1000),
        ]  # fmt: skip
        state, allowed = await self._call("breaker", [self.prefix + "b:" + target], args)
        return BreakerState(str(state), bool(int(allowed)))

    async def breakers(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        client = self._redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for target in targets:
                    pipe.hgetall(self.prefix + "b:" + target)
                rows = await pipe.execute()
        except Exception as exc:
            raise StateUnavailable(f"redis breakers: {type(exc).__name__}: {exc}") from exc
        out = []
        for row in rows:
            fields: dict[str, Any] = dict(row)
            for name in _FLOAT_FIELDS:
                if name in fields:
                    fields[name] = float(fields[name])
            out.append(fields)
        return out

    async def put_document(self, key: str, value: str, expires: float) -> None:
        client = self._redis()
        try:
            await client.set(self.prefix + "d:" + key, value, pxat=int(expires * 1000))
        except Exception as exc:
            raise StateUnavailable(f"redis set: {type(exc).__name__}: {exc}") from exc

    async def get_document(self, key: str) -> str | None:
        client = self._redis()
        try:
            value = await client.get(self.prefix + "d:" + key)
        except Exception as exc:
            raise StateUnavailable(f"redis get: {type(exc).__name__}: {exc}") from exc
        return None if value is None else str(value)

    async def delete_document(self, key: str) -> bool:
        client = self._redis()
        try:
            return bool(await client.delete(self.prefix + "d:" + key))
        except Exception as exc:
            raise StateUnavailable(f"redis delete: {type(exc).__name__}: {exc}") from exc

    async def clear(self) -> None:
        client = self._redis()
        async for key in client.scan_iter(match=self.prefix + "*"):
            await client.delete(key)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None
