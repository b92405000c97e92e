"""Rooms, broadcasts and parked sessions shared by every process using one Redis.

:class:`RedisBackend` is both a hub's :class:`~aiosocker.hub.Backend` and its
:class:`~aiosocker.resume.Store` (``serve(..., redis="redis://host:port/0")``, extra
``aiosocker[redis]``). What it keeps in Redis, under ``prefix`` (``aiosocker``):

* ``{prefix}:bcast`` -- the pub/sub channel every broadcast travels on, encoded by
  :meth:`~aiosocker.rooms.Broadcast.encode` (a JSON header and the payload; never pickle).
  Delivery is pub/sub's: at most once; a process that is not subscribed at that moment
  (Redis restarting, the link down) misses it.
* ``{prefix}:room:{room}`` -- a hash: one field per process (its :attr:`origin`) with that
  process's member count. ``{prefix}:alive`` maps each process to the Redis time (ms)
  until which it counts as alive; every process renews its own entry each
  ``heartbeat`` seconds, so a process that died without saying goodbye stops counting
  after ``3 * heartbeat`` seconds.
* ``{prefix}:park:{token}`` -- a parked session, JSON (:class:`~aiosocker.resume.Parked`),
  set with an expiry of the grace period; ``{prefix}:missed:{token}`` (a list) and
  ``{prefix}:missedmeta:{token}`` (a hash: bytes kept, overflow flag) hold what was sent
  to it meanwhile, bounded by :data:`~aiosocker.resume.MAX_MISSED` messages and
  :data:`~aiosocker.resume.MAX_MISSED_BYTES` bytes. A claim takes the three at once (a
  Lua script: atomic, so a token works once).

One task writes, in order: every broadcast this process publishes, every store operation
and the member counts go through one queue, sent as pipelines on one connection at a
time, so a process's broadcasts reach the others in the order they were made and a
session's missed messages are kept in the order they were sent. Another task holds the
subscription. When Redis is unreachable both reconnect with exponential backoff (and
jitter) while the server goes on serving its own connections: broadcasts meant for other
processes are dropped and counted in :attr:`RedisBackend.dropped`, a session that cannot
be parked starts fresh when its client comes back, and :meth:`RedisBackend.members`
counts this process's members only. On reconnecting, the backend writes its member
counts again (a restarted Redis has lost them) and logs what was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ..resume import MAX_MISSED, MAX_MISSED_BYTES, Missed, Parked, RecordError
from ..rooms import Broadcast, BroadcastError, decode

__all__ = ["RedisBackend", "RedisUnavailable"]

logger = logging.getLogger("aiosocker.redis")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: alive hash. ARGV: origin, ttl (ms). Renews this process's deadline, forgets the
# processes whose deadline has passed; returns 1 if this process was not there (a new or
# restarted Redis, or one that gave it up for dead): its counts must be written again.
_HEARTBEAT = (
    _NOW_MS
    + """
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local deadline = tonumber(fields[i + 1])
  if fields[i] ~= ARGV[1] and (deadline == nil or deadline <= now) then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now + tonumber(ARGV[2])))
"""
)

# KEYS: room hash, alive hash. Sums the counts of live processes; drops dead ones' (and
# anything that is not a count).
_MEMBERS = (
    _NOW_MS
    + """
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local deadline = tonumber(redis.call('HGET', KEYS[2], counts[i]) or '0')
  local n = tonumber(counts[i + 1])
  if deadline ~= nil and deadline > now and n ~= nil and n > 0 then
    total = total + math.floor(n)
  else
    redis.call('HDEL', KEYS[1], counts[i])
  end
end
return total
"""
)

# KEYS: park, missed list, missed meta. ARGV: data, max messages, max bytes. Keeps
# ``data`` for a parked session (0: none parked; 1: kept; 2: overflowed, nothing kept).
_MISSED = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
if redis.call('HGET', KEYS[3], 'over') == '1' then return 2 end
local n = redis.call('LLEN', KEYS[2])
local size = tonumber(redis.call('HGET', KEYS[3], 'size') or '0') or 0
if n >= tonumber(ARGV[2]) or size + string.len(ARGV[1]) > tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[3], 'over', '1', 'size', '0')
  redis.call('PEXPIRE', KEYS[3], ttl)
  return 2
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'size', string.len(ARGV[1]))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
"""

# KEYS: a room's orphans hash (token -> stage). ARGV: data, key prefix, max messages,
# max bytes, the broadcast's stages ("" for any, else joined by newlines). Keeps ``data``
# for every session parked by a process that has gone away, as _MISSED does; forgets the
# tokens whose park has expired or been claimed.
_ORPHANS = r"""
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local token, stage = entries[i], entries[i + 1]
  local park = ARGV[2] .. ':park:' .. token
  local missed = ARGV[2] .. ':missed:' .. token
  local meta = ARGV[2] .. ':missedmeta:' .. token
  local ttl = redis.call('PTTL', park)
  if ttl <= 0 then
    redis.call('HDEL', KEYS[1], token)
  elseif ARGV[5] == '' or string.find('\n' .. ARGV[5] .. '\n', '\n' .. stage .. '\n', 1, true) then
    if redis.call('HGET', meta, 'over') ~= '1' then
      local n = redis.call('LLEN', missed)
      local size = tonumber(redis.call('HGET', meta, 'size') or '0') or 0
      if n >= tonumber(ARGV[3]) or size + string.len(ARGV[1]) > tonumber(ARGV[4]) then
        redis.call('DEL', missed)
        redis.call('HSET', meta, 'over', '1', 'size', '0')
      else
        redis.call('RPUSH', missed, ARGV[1])
        redis.call('HINCRBY', meta, 'size', string.len(ARGV[1]))
        redis.call('PEXPIRE', missed, ttl)
      end
      redis.call('PEXPIRE', meta, ttl)
    end
  end
end
return 1
"""

# KEYS: park, missed list, missed meta. Takes the record and its missed messages at once.
_CLAIM = """
local rec = redis.call('GET', KEYS[1])
if not rec then return false end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local over = redis.call('HGET', KEYS[3], 'over')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if over == '1' then over = 1 else over = 0 end
return {rec, over, items}
"""

_OpKind = Literal["publish", "park", "missed", "claim", "members", "adopt"]


@dataclass(slots=True)
class _Op:
    kind: _OpKind
    args: tuple[Any, ...]
    done: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class _Outage:
    """What happened while Redis was unreachable (for the log line when it is back)."""

    since: float = field(default_factory=time.monotonic)
    publish: int = 0
    store: int = 0


_OWN_OPTIONS = ("prefix", "heartbeat")


def _own_options(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without this backend's own query options (``prefix``, ``heartbeat``),
    and those options: ``serve(redis="redis://host:6379/0?prefix=game1&heartbeat=2")``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {key: value for key, value in query if key in _OWN_OPTIONS}
    rest = urlencode([(key, value) for key, value in query if key not in _OWN_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), own


class RedisUnavailable(RedisError):
    """Redis is unreachable right now (the operation was not attempted)."""


class RedisBackend:
    """A :class:`~aiosocker.hub.Backend` and :class:`~aiosocker.resume.Store` on Redis.

    ``url`` is ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
    ``prefix`` names this deployment's keys and channel (processes with the same
    prefix share rooms and sessions; default ``aiosocker``). ``heartbeat``: seconds
    between liveness renewals (default 5; a dead process stops counting after three).
    Both can also be given in the URL's query, as ``serve(redis=...)`` takes a URL only:
    ``redis://host:6379/0?prefix=game1&heartbeat=2``. ``backoff``: the longest wait between
    reconnection attempts. ``max_pending``: operations queued for the writer at most;
    past it, broadcasts are dropped (and counted).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        heartbeat: float | None = None,
        backoff: float = 2.0,
        connect_timeout: float = 5.0,
        max_pending: int = 10_000,
    ) -> None:
        url, from_url = _own_options(url)
        prefix = prefix if prefix is not None else from_url.get("prefix", "aiosocker")
        try:
            heartbeat = heartbeat if heartbeat is not None else float(from_url.get("heartbeat", 5))
        except ValueError:
            raise ValueError(f"heartbeat= in the Redis URL must be seconds, got {url!r}") from None
        if not heartbeat > 0 or backoff <= 0 or connect_timeout <= 0 or max_pending < 1:
            raise ValueError("heartbeat, backoff, connect_timeout and max_pending must be > 0")
        if not prefix or any(c in prefix for c in "{}* \n"):
            raise ValueError(f"prefix must be a plain non-empty name, got {prefix!r}")
        self.url = url
        self.origin = uuid.uuid4().hex
        """This process's id among those sharing the Redis (a fresh uuid4)."""
        self.prefix = prefix
        self.channel = f"{prefix}:bcast"
        self._alive_key = f"{prefix}:alive"
        self._heartbeat = heartbeat
        self._ttl_ms = int(heartbeat * 3000)
        self._backoff_max = backoff
        self._connect_timeout = connect_timeout
        self._max_pending = max_pending
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=max(connect_timeout, heartbeat),
            retry=Retry(NoBackoff(), 0),  # no silent resend: a broadcast goes at most once
            health_check_interval=max(1, int(heartbeat)),
        )
        self._heartbeat_script = self._redis.register_script(_HEARTBEAT)
        self._members_script = self._redis.register_script(_MEMBERS)
        self._missed_script = self._redis.register_script(_MISSED)
        self._claim_script = self._redis.register_script(_CLAIM)
        self._orphans_script = self._redis.register_script(_ORPHANS)
        self._deliver: Callable[[Broadcast], None] | None = None
        self._ops: deque[_Op] = deque()
        self._local: dict[str, int] = {}  # room -> members in this process
        self._dirty: set[str] = set()  # rooms whose count Redis has not got yet
        self._written: set[str] = set()  # rooms holding a field of this process
        self._wake = asyncio.Event()
        self._beat_due = True
        self._up = False  # the writer's last pipeline went through
        self._subscribed = False
        self._writer_ready = asyncio.Event()
        self._subscriber_ready = asyncio.Event()
        self._outage: _Outage | None = None
        self._sub_outage: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.dropped: dict[str, int] = {"publish": 0, "store": 0, "garbage": 0}
        """What was lost so far: broadcasts not sent to the other processes, store
        operations (park, missed, claim) that did not happen, and messages on the
        channel that were not broadcasts (refused)."""

    # -- state ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether both the writer and the subscription are up right now."""
        return self._up and self._subscribed

    # -- Backend --------------------------------------------------------------------

    async def start(self, deliver: Callable[[Broadcast], None]) -> None:
        """Connect and subscribe; from now on ``deliver`` gets every other process's
        broadcast. Waits up to ``connect_timeout`` for Redis; if it is not reachable
        by then, logs it and goes on connecting in the background."""
        if self._tasks:
            raise RuntimeError("RedisBackend.start() was called already")
        self._deliver = deliver
        self._tasks = [
            asyncio.create_task(self._writer(), name="aiosocker-redis-writer"),
            asyncio.create_task(self._subscriber(), name="aiosocker-redis-subscriber"),
        ]
        ready = asyncio.gather(self._writer_ready.wait(), self._subscriber_ready.wait())
        try:
            await asyncio.wait_for(ready, self._connect_timeout + 1)
        except TimeoutError:
            logger.error(
                "redis: not reachable at start; serving this process's connections only, "
                "and retrying in the background"
            )

    async def publish(self, broadcast: Broadcast) -> None:
        """Queue ``broadcast`` for the other processes (never waits for Redis)."""
        if self._closed:
            return
        if not self._up and self._tasks and self._outage is not None:
            self.dropped["publish"] += 1
            self._outage.publish += 1
            return
        if len(self._ops) >= self._max_pending:
            self.dropped["publish"] += 1
            if self.dropped["publish"] & (self.dropped["publish"] - 1) == 0:  # 1, 2, 4, ...
                logger.warning(
                    "redis: %d broadcasts dropped so far: the writer is not keeping up",
                    self.dropped["publish"],
                )
            return
        orphans = broadcast.room is not None and broadcast.channel is None
        stages = "\n".join(sorted(broadcast.stages)) if broadcast.stages is not None else ""
        self._ops.append(
            _Op(
                "publish",
                (broadcast.encode(), broadcast.room if orphans else None, broadcast.data, stages),
            )
        )
        self._wake.set()

    def joined(self, room: str) -> None:
        """One more local member in ``room`` (written to Redis by the writer task)."""
        self._local[room] = self._local.get(room, 0) + 1
        self._dirty.add(room)
        self._wake.set()

    def left(self, room: str) -> None:
        """One local member fewer in ``room`` (written to Redis by the writer task)."""
        count = self._local.get(room, 0) - 1
        if count > 0:
            self._local[room] = count
        else:
            self._local.pop(room, None)
        self._dirty.add(room)
        self._wake.set()

    async def members(self, room: str) -> int:
        """Members of ``room`` on every live process (this one's only while Redis is
        unreachable)."""
        try:
            result = await self._call("members", room)
        except (RedisError, OSError):
            return self._local.get(room, 0)
        return int(result)

    async def close(self) -> None:
        """Send what is queued (for a moment at most), take this process's counts out
        of Redis and disconnect."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._tasks:
            writer = self._tasks[0]
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), self._connect_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for op in self._ops:
            self._fail(op, RedisUnavailable("backend closed"))
        self._ops.clear()
        if self._up:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for room in self._written:
                        pipe.hdel(self._room_key(room), self.origin)
                    pipe.hdel(self._alive_key, self.origin)
                    await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("redis: could not take this process's counts out: %s", exc)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # -- Store ----------------------------------------------------------------------

    async def park(self, token: str, record: Parked, grace: float) -> None:
        """Keep ``record`` under ``token`` for ``grace`` seconds. Raises ``RedisError``
        (counted in :attr:`dropped`) if Redis is unreachable: the hub then keeps no
        session, and that client will start fresh."""
        expires = time.time() + grace
        data = Parked(
            record.id, record.user, record.state, record.rooms, record.stage, expires
        ).encode()  # JSON only; a TypeError for what is not JSON data, as MemoryStore
        await self._call("park", token, data, max(1, int(grace * 1000)))

    async def claim(self, token: str) -> tuple[Parked, Missed] | None:
        """Take the record parked under ``token`` and its missed messages, once;
        ``None`` if unknown, used, expired or not a record (logged, counted). Raises
        ``RedisError`` if Redis is unreachable."""
        try:
            result = await self._call("claim", token)
        except ResponseError as exc:  # Redis refused: a key of the wrong type there
            self.dropped["garbage"] += 1
            logger.warning("redis: refused a parked session that is not a record: %s", exc)
            return None
        if result is None:
            return None
        try:
            raw, over, items = result
            record = Parked.decode(raw)
            missed = Missed()
            missed.overflowed = bool(over)
            for item in items:
                if not isinstance(item, bytes):
                    raise RecordError("missed messages must be bytes")
                missed.messages.append(item)
                missed.size += len(item)
        except (RecordError, TypeError, ValueError) as exc:
            self.dropped["garbage"] += 1
            logger.warning("redis: refused a parked session that is not a record: %s", exc)
            return None
        return record, missed

    async def adopt(self, token: str, rooms: tuple[str, ...], stage: str, grace: float) -> None:
        """This process is going away: from now on, whichever process broadcasts to one
        of ``rooms`` keeps the message for the session parked under ``token``."""
        if rooms and grace > 0:
            with contextlib.suppress(RedisError, OSError):  # counted in dropped["store"]
                await self._call("adopt", token, rooms, stage, max(1, int(grace * 1000)))

    async def missed(self, token: str, data: bytes) -> None:
        """Keep ``data`` for the session parked under ``token`` (if it still is)."""
        with contextlib.suppress(RedisError, OSError):  # counted in dropped["store"]
            await self._call("missed", token, bytes(data))

    # -- the writer -----------------------------------------------------------------

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    def _orphans_key(self, room: str) -> str:
        return f"{self.prefix}:orphans:{room}"

    def _session_keys(self, token: str) -> list[str]:
        p = self.prefix
        return [f"{p}:park:{token}", f"{p}:missed:{token}", f"{p}:missedmeta:{token}"]

    async def _call(self, kind: _OpKind, *args: Any) -> Any:
        """Queue a store operation for the writer and wait for its result."""
        if self._closed:
            raise RedisUnavailable("backend closed")
        if not self._up:
            if self._outage is not None:
                self._outage.store += kind != "members"
            self.dropped["store"] += kind != "members"
            raise RedisUnavailable("redis is unreachable")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(kind, args, done))
        self._wake.set()
        return await done

    def _fail(self, op: _Op, exc: BaseException) -> None:
        if op.kind == "publish":
            self.dropped["publish"] += 1
            if self._outage is not None:
                self._outage.publish += 1
        else:
            if op.kind != "members":
                self.dropped["store"] += 1
                if self._outage is not None:
                    self._outage.store += 1
            if op.done is not None and not op.done.done():
                op.done.set_exception(exc)

    async def _queue(self, pipe: Any, op: _Op) -> None:
        if op.kind == "publish":
            encoded, room, data, stages = op.args
            pipe.publish(self.channel, encoded)
            if room is not None:
                await self._orphans_script(
                    keys=[self._orphans_key(room)],
                    args=[data, self.prefix, MAX_MISSED, MAX_MISSED_BYTES, stages],
                    client=pipe,
                )
        elif op.kind == "adopt":
            token, rooms, stage, ttl_ms = op.args
            for room in rooms:
                pipe.hset(self._orphans_key(room), token, stage)
                pipe.pexpire(self._orphans_key(room), ttl_ms)
        elif op.kind == "park":
            token, data, grace_ms = op.args
            park, missed, meta = self._session_keys(token)
            pipe.set(park, data, px=grace_ms)
            pipe.delete(missed, meta)
        elif op.kind == "missed":
            token, data = op.args
            await self._missed_script(
                keys=self._session_keys(token),
                args=[data, MAX_MISSED, MAX_MISSED_BYTES],
                client=pipe,
            )
        elif op.kind == "claim":
            await self._claim_script(keys=self._session_keys(op.args[0]), client=pipe)
        else:  # members
            await self._members_script(
                keys=[self._room_key(op.args[0]), self._alive_key], client=pipe
            )

    @staticmethod
    def _replies(op: _Op) -> int:
        if op.kind == "publish":
            return 1 if op.args[1] is None else 2
        if op.kind == "adopt":
            return 2 * len(op.args[1])
        return 2 if op.kind == "park" else 1

    async def _writer(self) -> None:
        failures = 0
        next_beat = 0.0
        while True:
            if self._closed and not self._ops and not self._dirty:
                return
            loop_now = time.monotonic()
            if loop_now >= next_beat:
                self._beat_due = True
            if not self._beat_due and not self._ops and not self._dirty and not self._closed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - loop_now))
                continue
            if self._closed and not self._up:
                return  # nothing more can be sent
            batch = [self._ops.popleft() for _ in range(min(len(self._ops), 1000))]
            rooms, self._dirty = self._dirty, set()
            beat = self._beat_due
            try:
                sent = await self._send(batch, rooms, beat)
            except (RedisError, OSError, TimeoutError) as exc:
                self._dirty |= rooms
                self._went_down(exc, "writer")
                for op in batch:
                    self._fail(op, exc)
                for op in list(self._ops):  # queued meanwhile: they would only wait
                    self._fail(op, exc)
                self._ops.clear()
                if self._closed:
                    return
                failures += 1
                with contextlib.suppress(RedisError, OSError):  # every pooled link is stale
                    await self._redis.connection_pool.disconnect()
                await asyncio.sleep(self._delay(failures))
                self._beat_due = True  # the next attempt checks the link first
                continue
            failures = 0
            beat_reply, replies = sent
            if beat:
                self._beat_due = False
                next_beat = time.monotonic() + self._heartbeat
                if beat_reply == 1:  # Redis did not know this process: write counts again
                    self._dirty |= set(self._local) | self._written
                    self._wake.set()
                if not self._up:
                    self._came_back()
                self._writer_ready.set()
            at = 0  # an index, not replies[n:]: a list copy per op made batches quadratic
            for op in batch:
                reply = replies[at]
                at += self._replies(op)
                if op.done is None or op.done.done():
                    if isinstance(reply, Exception):
                        logger.warning("redis: %s failed: %s", op.kind, reply)
                    continue
                if isinstance(reply, Exception):
                    if op.kind != "members":
                        self.dropped["store"] += 1
                    op.done.set_exception(reply)
                else:
                    op.done.set_result(reply)

    async def _send(self, batch: list[_Op], rooms: set[str], beat: bool) -> tuple[Any, list[Any]]:
        """One pipeline: the heartbeat, the member counts, then ``batch`` in order.
        Returns the heartbeat's reply and the replies of ``batch``."""
        pipe = self._redis.pipeline(transaction=False)
        head = 0
        if beat:
            await self._heartbeat_script(
                keys=[self._alive_key], args=[self.origin, self._ttl_ms], client=pipe
            )
            head += 1
        for room in rooms:
            key = self._room_key(room)
            count = self._local.get(room, 0)
            if count:
                pipe.hset(key, self.origin, count)
                pipe.pexpire(key, self._ttl_ms)
                head += 2
            else:
                pipe.hdel(key, self.origin)
                head += 1
        if beat:  # keep the rooms this process is in from expiring
            for room in self._local:
                if room not in rooms:
                    pipe.pexpire(self._room_key(room), self._ttl_ms)
                    head += 1
        for op in batch:
            await self._queue(pipe, op)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        beat_reply = replies[0] if beat else None
        if isinstance(beat_reply, Exception):
            raise beat_reply
        for room in rooms:
            if self._local.get(room, 0):
                self._written.add(room)
            else:
                self._written.discard(room)
        return beat_reply, replies[head:]

    # -- the subscriber -------------------------------------------------------------

    async def _subscriber(self) -> None:
        failures = 0
        while not self._closed:
            pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed = True
                failures = 0
                if self._sub_outage is not None:
                    logger.warning(
                        "redis: subscribed again after %.1f s; broadcasts other processes "
                        "made meanwhile were lost",
                        time.monotonic() - self._sub_outage,
                    )
                    self._sub_outage = None
                self._subscriber_ready.set()
                while not self._closed:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._heartbeat
                    )
                    if message is not None and message.get("type") == "message":
                        self._received(message.get("data"))
            except (RedisError, OSError, TimeoutError) as exc:
                self._subscribed = False
                if self._closed:
                    return
                if self._sub_outage is None:
                    self._sub_outage = time.monotonic()
                    logger.warning(
                        "redis: subscription lost (%s); broadcasts from other processes are "
                        "lost until it is back; reconnecting",
                        exc,
                    )
                failures += 1
                await asyncio.sleep(self._delay(failures))
            finally:
                self._subscribed = False
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await cast(Any, pubsub).aclose()  # untyped in some versions

    def _received(self, raw: object) -> None:
        if not isinstance(raw, bytes):
            return
        try:
            message = decode(raw)
        except BroadcastError as exc:
            self.dropped["garbage"] += 1
            if self.dropped["garbage"] & (self.dropped["garbage"] - 1) == 0:  # 1, 2, 4, ...
                logger.warning(
                    "redis: refused a message on %s that is not a broadcast (%s); %d so far",
                    self.channel,
                    exc,
                    self.dropped["garbage"],
                )
            return
        if message.origin == self.origin or self._deliver is None:
            return
        try:
            self._deliver(message)
        except Exception:
            logger.exception("redis: delivering a broadcast failed")

    # -- outages --------------------------------------------------------------------

    def _delay(self, failures: int) -> float:
        """Exponential backoff with full jitter, capped at ``backoff`` seconds."""
        ceiling = min(self._backoff_max, 0.05 * 2 ** min(failures, 16))
        return random.uniform(ceiling / 2, ceiling)

    def _went_down(self, exc: BaseException, who: str) -> None:
        self._up = False
        if self._outage is None:
            self._outage = _Outage()
            logger.warning(
                "redis: unreachable (%s: %s); serving this process's connections only, "
                "dropping broadcasts to other processes, reconnecting",
                who,
                exc,
            )

    def _came_back(self) -> None:
        self._up = True
        outage, self._outage = self._outage, None
        if outage is not None:
            logger.warning(
                "redis: reachable again after %.1f s; dropped meanwhile: %d broadcasts, "
                "%d session operations",
                time.monotonic() - outage.since,
                outage.publish,
                outage.store,
            )
