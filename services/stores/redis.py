"""The Redis peer store: live swarms in a regional Redis or Redis Cluster (`RedisPeerStore`).

This module owns the key layout, the Lua scripts and every call to Redis; nothing else in
Meridian talks to the peer keys. Store URLs (see `open_store`):

- `redis://[user:password@]host:port/db` and `rediss://...` (TLS): one server.
- `redis+cluster://[user:password@]host:port[,host:port...]` and `rediss+cluster://...`:
  a Redis Cluster, reached through any of the listed nodes.

Key layout. Every key of one torrent carries the torrent as its hash tag, so a torrent lives in
one cluster slot and one script touches it atomically:

    m:{<tag>}:s4  m:{<tag>}:l4   seeders / leechers, IPv4: endpoint -> deadline    sorted set
    m:{<tag>}:s6  m:{<tag>}:l6   seeders / leechers, IPv6                          sorted set
    m:{<tag>}:r4  m:{<tag>}:r6   record per endpoint: peer_id and version          hash
    m:{<tag>}:t4  m:{<tag>}:t6   tombstones: endpoint -> when it may be forgotten   sorted set
    m:{<tag>}:dl                 finished downloads                                 integer
    m:flag:<name>                region flags (`get_flag`/`set_flag`)              string

`<tag>` is the raw 20-byte info_hash, or its 40-char hex when the raw bytes hold a `}` (which
would end the hash tag early); the lengths tell the two apart. A set member is the peer's compact
endpoint itself (6 bytes for IPv4, 18 for IPv6), so identity is (ip, port) and an answer is the
concatenation of members. Its score is the peer's deadline (UNIX seconds; an announce rounds
`now + peer_ttl` up to a whole second, which listpacks store as a small integer).

A record (`<len><peer_id><version>`) is kept when the store keeps peer ids (`peer_ids=True`,
for non-compact answers) or the write carries a version (for merging other regions' events:
the version bytes are the 8-byte HLC, region, NUL, node, so byte order is merge order). A
`stopped` with a version moves the record under a tombstone until `tombstone_ttl` has passed.

Expiry needs no sweeper: each announce drops its family's expired members and their records
(ZCOUNT then, only if some expired, ZRANGE BYSCORE / ZREM / HDEL), counts the other family with
ZCOUNT above `now`, and every written key gets a TTL just past its latest deadline (PEXPIRE GT:
a TTL only ever grows), so an idle swarm's keys vanish on their own. `:dl` has its own, longer
TTL, refreshed at each `completed`. `collect_garbage` is a bounded incremental SCAN that tidies
sets of a family that stopped announcing and forgets old tombstones; correctness never waits
for it.

One round trip per announce: one EVALSHA of `_ANNOUNCE` (loaded at start, reloaded on
NOSCRIPT) upserts, expires, counts, samples by rank windows (random offsets, never reading a
whole swarm) and returns the chosen peers already compact as one string. Announces queued in
one event-loop tick share one pipeline (`batch=True`); on a cluster, redis-py groups that
pipeline by node. `apply` merges events in pipelines of one `_APPLY` call per event.

`now` always comes from the caller (ARGV), never from Redis TIME. Every Redis error, refusal or
timeout surfaces as `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from services.core.events import AnnounceEvent
from services.core.merge import Version, record_of
from services.core.model import Event, Family, Peer, SwarmAnswer, SwarmStats, family_of

from .base import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 0.25
DEFAULT_PREFIX = b"m:"
DEFAULT_DOWNLOADED_TTL = 30 * 86400
DEFAULT_MAX_CONNECTIONS = 64
_EXPIRE_BATCH = 1000  # expired members dropped per set and call; the rest go next time
_GC_SCAN_COUNT = 1000
_APPLY_CHUNK = 500  # merged events per pipeline, each pipeline within the timeout
# rank windows per sampled set: more spread the sample over the swarm, each costs a ZRANGE
_STRATA = 1

_EVENT_CODES = {Event.UPDATE: b"u", Event.STARTED: b"s", Event.COMPLETED: b"c",
                Event.STOPPED: b"x"}

# Helpers shared by the scripts that write peers. `KEYS`/`ARGV` layouts are at each script.
_PRELUDE = """
local now = ARGV[4]

-- PEXPIRE that only ever lengthens a key's life (GT), and sets one on a key that has none
local function keep_ttl(key, ms)
  if redis.call('PEXPIRE', key, ms, 'GT') == 0 and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Drop a set's expired members and their records; return how many expired members are left
-- (only when more than one batch expired at once): they hold the lowest ranks and are skipped.
local function expire(key, records)
  local expired = redis.call('ZCOUNT', key, '-inf', now)
  if expired == 0 then return 0 end
  local gone = redis.call('ZRANGE', key, '-inf', now, 'BYSCORE', 'LIMIT', '0', '$BATCH')
  redis.call('ZREM', key, unpack(gone))
  redis.call('HDEL', records, unpack(gone))
  return expired - #gone
end

-- Upsert a live peer into the seeder or leecher set of its family; false at the swarm bound.
local function upsert(s, l, member, seeder, deadline, max_peers)
  local target, other = l, s
  if seeder then target, other = s, l end
  local added, moved = redis.call('ZADD', target, deadline, member), 0
  -- only a member new to its set can be in the other one (it changed sides) or be new
  if added == 1 then moved = redis.call('ZREM', other, member) end
  if added == 1 and moved == 0 and max_peers > 0
      and redis.call('ZCARD', target) + redis.call('ZCARD', other) > max_peers then
    redis.call('ZREM', target, member)
    return false
  end
  return target
end
"""

# KEYS: own seeders, own leechers, other seeders, other leechers, own records, own tombstones, dl
# ARGV: member, seeder, event, now, deadline, key_ttl_ms, numwant, max_peers, record (empty:
#       keep none), want_ids, dl_ttl_ms, tombstone forget-after (empty: no tombstone),
#       tombstone_ttl_ms
# Returns {seeders, leechers, downloaded, compact peers, stored, [records of the peers]}.
_ANNOUNCE = _PRELUDE + """
local member, seeder, event = ARGV[1], ARGV[2] == '1', ARGV[3]
local numwant, max_peers, record = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local own_s, own_l, records, tombs = KEYS[1], KEYS[2], KEYS[5], KEYS[6]
local stale_s, stale_l = expire(own_s, records), expire(own_l, records)

local stored = 1
if event == 'x' then
  redis.call('ZREM', own_s, member)
  redis.call('ZREM', own_l, member)
  if ARGV[12] ~= '' then
    redis.call('ZADD', tombs, ARGV[12], member)
    keep_ttl(tombs, ARGV[13])
    redis.call('HSET', records, member, record)
    keep_ttl(records, ARGV[13])
  else
    redis.call('HDEL', records, member)
  end
else
  local target = upsert(own_s, own_l, member, seeder, ARGV[5], max_peers)
  if target then
    keep_ttl(target, ARGV[6])
    if record ~= '' then
      redis.call('HSET', records, member, record)
      keep_ttl(records, ARGV[6])
    end
  else
    stored = 0
  end
end

local downloaded
if event == 'c' then
  downloaded = redis.call('INCR', KEYS[7])
  redis.call('PEXPIRE', KEYS[7], ARGV[11])
else
  downloaded = tonumber(redis.call('GET', KEYS[7]) or '0')
end

local above = '(' .. now
local s_own = redis.call('ZCARD', own_s) - stale_s
local l_own = redis.call('ZCARD', own_l) - stale_l
local seeders = s_own + redis.call('ZCOUNT', KEYS[3], above, '+inf')
local leechers = l_own + redis.call('ZCOUNT', KEYS[4], above, '+inf')
if event == 'x' or numwant <= 0 then
  return {seeders, leechers, downloaded, '', stored}
end

-- Sampling reads ranks, never the whole set: k of the n live members (ranks from `base` on, in
-- deadline order) come from min($STRATA, k) strata of that order, a circular window at a random
-- offset in each, so every member is picked with probability k/n. The caller's own rank (`skip`)
-- is stepped over, so it is never drawn and no member-by-member filter is needed.
local chunks = {}
local function fetch(key, base, a, b, skip)
  a, b = a + base, b + base
  if skip < 0 or b < skip then
    chunks[#chunks + 1] = redis.call('ZRANGE', key, a, b)
  elseif a >= skip then
    chunks[#chunks + 1] = redis.call('ZRANGE', key, a + 1, b + 1)
  else
    chunks[#chunks + 1] = redis.call('ZRANGE', key, a, skip - 1)
    chunks[#chunks + 1] = redis.call('ZRANGE', key, skip + 1, b + 1)
  end
end
local function sample(key, base, n, k, skip)
  if k <= 0 then return end
  if k >= n then return fetch(key, base, 0, n - 1, skip) end
  local strata = math.min($STRATA, k)
  for j = 0, strata - 1 do
    local lo, hi = math.floor(j * n / strata), math.floor((j + 1) * n / strata)
    local take = math.floor(k * hi / n) - math.floor(k * lo / n)
    if take > 0 then
      local offset = math.random(0, hi - lo - 1)
      local wrap = offset + take - (hi - lo)
      if wrap <= 0 then
        fetch(key, base, lo + offset, lo + offset + take - 1, skip)
      else
        fetch(key, base, lo + offset, hi - 1, skip)
        fetch(key, base, lo, lo + wrap - 1, skip)
      end
    end
  end
end

-- a seeder gets leechers only; a leecher any peer but itself, leechers and seeders in proportion
if seeder then
  sample(own_l, stale_l, l_own, math.min(numwant, l_own), -1)
else
  local skip = redis.call('ZRANK', own_l, member)
  local others_l = l_own
  if skip then others_l = l_own - 1 else skip = -1 end
  local k = math.min(numwant, others_l + s_own)
  if k > 0 then
    local from_l = math.floor(k * others_l / (others_l + s_own) + math.random())
    from_l = math.max(k - s_own, math.min(from_l, others_l))
    sample(own_l, stale_l, others_l, from_l, skip)
    sample(own_s, stale_s, s_own, k - from_l, -1)
  end
end
local parts = {}
for i = 1, #chunks do parts[i] = table.concat(chunks[i]) end
local answer = {seeders, leechers, downloaded, table.concat(parts), stored}
if ARGV[10] == '1' and #chunks > 0 then
  local picks = {}
  for i = 1, #chunks do
    for _, m in ipairs(chunks[i]) do picks[#picks + 1] = m end
  end
  if #picks > 0 then answer[6] = redis.call('HMGET', records, unpack(picks)) end
end
return answer
"""

# KEYS: own seeders, own leechers, own records, own tombstones, dl
# ARGV: member, seeder, kind, now, deadline, key_ttl_ms, max_peers, record, version,
#       removed ('1': stopped or already expired), forget-after, forget_ttl_ms, dl_ttl_ms
# Returns 1 if the event won (last writer by version), else 0.
_APPLY = _PRELUDE + """
local member, version = ARGV[1], ARGV[9]
local s, l, records, tombs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local current = redis.call('HGET', records, member)
if current then
  -- a record is <peer_id length byte><peer_id><version>; versions compare byte by byte
  local held = string.sub(current, 2 + string.byte(current, 1))
  if version == held then return 0 end
  local n = math.min(#version, #held)
  local newer = #version > #held
  for i = 1, n do
    local a, b = string.byte(version, i), string.byte(held, i)
    if a ~= b then newer = a > b break end
  end
  if not newer then return 0 end
end
if ARGV[3] == 'c' then
  redis.call('INCR', KEYS[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[13])
end
if ARGV[10] == '1' then
  redis.call('ZREM', s, member)
  redis.call('ZREM', l, member)
  redis.call('ZADD', tombs, ARGV[11], member)
  keep_ttl(tombs, ARGV[12])
  redis.call('HSET', records, member, ARGV[8])
  keep_ttl(records, ARGV[12])
  return 1
end
local target = upsert(s, l, member, ARGV[2] == '1', ARGV[5], tonumber(ARGV[7]))
if not target then return -1 end
keep_ttl(target, ARGV[6])
redis.call('HSET', records, member, ARGV[8])
keep_ttl(records, ARGV[6])
redis.call('ZREM', tombs, member)
return 1
"""

# KEYS: s4, l4, s6, l6, dl.  ARGV: now.  Returns {seeders, leechers, downloaded}.
_SCRAPE = """
local above = '(' .. ARGV[1]
return {redis.call('ZCOUNT', KEYS[1], above, '+inf') + redis.call('ZCOUNT', KEYS[3], above, '+inf'),
        redis.call('ZCOUNT', KEYS[2], above, '+inf') + redis.call('ZCOUNT', KEYS[4], above, '+inf'),
        tonumber(redis.call('GET', KEYS[5]) or '0')}
"""

# KEYS: seeders, leechers, records, tombstones of one family.  ARGV: now.
# Drops expired peers and forgotten tombstones (with their records); returns peers removed.
_COLLECT = """
local now, removed = ARGV[1], 0
for i = 1, 2 do
  local gone = redis.call('ZRANGE', KEYS[i], '-inf', now, 'BYSCORE', 'LIMIT', '0', '$BATCH')
  if #gone > 0 then
    removed = removed + redis.call('ZREM', KEYS[i], unpack(gone))
    redis.call('HDEL', KEYS[3], unpack(gone))
  end
end
local forgotten = redis.call('ZRANGE', KEYS[4], '-inf', now, 'BYSCORE', 'LIMIT', '0', '$BATCH')
for _, member in ipairs(forgotten) do
  redis.call('ZREM', KEYS[4], member)
  if not redis.call('ZSCORE', KEYS[1], member) and not redis.call('ZSCORE', KEYS[2], member) then
    redis.call('HDEL', KEYS[3], member)
  end
end
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[4]) == 0 then redis.call('DEL', KEYS[3]) end
return removed
"""


def _fill(script: str) -> str:
    return script.replace("$BATCH", str(_EXPIRE_BATCH)).replace("$STRATA", str(_STRATA))


_SCRIPTS = tuple((name, _fill(body)) for name, body in (
    ("announce", _ANNOUNCE), ("apply", _APPLY), ("scrape", _SCRAPE), ("collect", _COLLECT)))


@dataclass(frozen=True, slots=True)
class SwarmKeys:
    """The keys of one torrent; all share the torrent's hash tag, hence one cluster slot."""

    s4: bytes
    l4: bytes
    s6: bytes
    l6: bytes
    r4: bytes
    r6: bytes
    t4: bytes
    t6: bytes
    dl: bytes

    def family(self, family: Family) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
        """(own seeders, own leechers, other seeders, other leechers, own records, own tombs)."""
        if family is Family.IPV4:
            return self.s4, self.l4, self.s6, self.l6, self.r4, self.t4
        return self.s6, self.l6, self.s4, self.l4, self.r6, self.t6


def swarm_tag(info_hash: bytes) -> bytes:
    """The hash tag of a torrent: the raw hash, or its hex when a `}` would cut the tag short."""
    return info_hash.hex().encode() if b"}" in info_hash else info_hash


def swarm_keys(prefix: bytes, info_hash: bytes) -> SwarmKeys:
    base = prefix + b"{" + swarm_tag(info_hash) + b"}:"
    return SwarmKeys(*(base + suffix for suffix in (b"s4", b"l4", b"s6", b"l6", b"r4", b"r6",
                                                     b"t4", b"t6", b"dl")))


def version_bytes(version: Version | None) -> bytes:
    """A version as bytes whose byte order is the merge order: HLC, then region, then node."""
    if version is None:
        return b""
    hlc, region, node = version
    return hlc.to_bytes(8, "big") + region.encode() + b"\0" + node.encode()


def peer_record(peer_id: bytes, version: Version | None) -> bytes:
    """The record kept per endpoint: <peer_id length><peer_id><version>."""
    return bytes((len(peer_id),)) + peer_id + version_bytes(version)


def peer_id_of(record: bytes | None) -> bytes:
    return record[1:1 + record[0]] if record else b""


def info_hash_of_key(prefix: bytes, key: bytes) -> bytes | None:
    """The info_hash a peer key belongs to, or None for a key that is not one of ours."""
    if not key.startswith(prefix + b"{") or key[-4:-2] != b"}:":
        return None
    tag = key[len(prefix) + 1:-4]
    if len(tag) == 20:
        return tag
    if len(tag) == 40:
        try:
            return bytes.fromhex(tag.decode("ascii"))
        except ValueError:
            return None
    return None


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _peers(compact: bytes, family: Family, records: list[bytes | None] | None
           ) -> tuple[Peer, ...]:
    size = 6 if family is Family.IPV4 else 18
    cut = size - 2
    peers = []
    for n, start in enumerate(range(0, len(compact), size)):
        chunk = compact[start:start + size]
        peer_id = peer_id_of(records[n]) if records else b""
        peers.append(Peer(chunk[:cut], int.from_bytes(chunk[cut:], "big"), peer_id))
    return tuple(peers)


@dataclass
class _Batch:
    """EVALSHA calls queued during one event-loop tick, sent as one pipeline."""

    calls: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = field(default_factory=list)


class RedisPeerStore:
    """`PeerStore` on Redis or Redis Cluster; see the module docstring for the layout."""

    def __init__(self, client: aioredis.Redis | RedisCluster, peer_ttl: float, *,
                 max_peers_per_swarm: int = 0, peer_ids: bool = True,
                 downloaded_ttl: float = DEFAULT_DOWNLOADED_TTL, timeout: float = DEFAULT_TIMEOUT,
                 prefix: bytes = DEFAULT_PREFIX, batch: bool = True,
                 tombstone_ttl: float | None = None) -> None:
        if b"{" in prefix or b"}" in prefix:
            raise ValueError(f"the key prefix {prefix!r} must not hold braces (hash tags)")
        self.client = client
        self.peer_ttl = peer_ttl
        self.tombstone_ttl = tombstone_ttl if tombstone_ttl is not None else 2 * peer_ttl
        self.max_peers_per_swarm = max_peers_per_swarm
        self.peer_ids = peer_ids
        self.downloaded_ttl_ms = int(downloaded_ttl * 1000)
        self.timeout = timeout
        self.prefix = prefix
        self.batch = batch
        self.cluster = isinstance(client, RedisCluster)
        self.bounds_hit = {"peers_per_swarm": 0}
        self._last_bound_log = 0.0
        self._sha = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in _SCRIPTS}
        self._pending: _Batch | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._gc_cursors: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_scripts()

    async def close(self) -> None:
        if self._flushes:  # let the last tick's announces finish or fail, within the timeout
            await asyncio.wait(set(self._flushes), timeout=2 * self.timeout)
        try:
            await self.client.aclose()
        except (RedisError, RedisClusterException, OSError):
            log.debug("closing the Redis client failed", exc_info=True)

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def _load_scripts(self) -> None:
        for name, body in _SCRIPTS:
            sha = await self._call(self.client.script_load(body))
            if (sha.decode() if isinstance(sha, bytes) else sha) != self._sha[name]:
                raise StoreUnavailable(f"Redis returned an unexpected SHA1 for script {name}")

    async def _call(self, awaitable: Any) -> Any:
        """Await one Redis call within the timeout; every failure becomes StoreUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except TimeoutError as exc:
            raise StoreUnavailable(f"Redis did not answer within {self.timeout}s") from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"Redis failed: {exc}") from exc

    async def _evalsha(self, name: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """One script call, reloading the scripts once if Redis lost them (restart, failover)."""
        try:
            return await self._call(self.client.evalsha(self._sha[name], len(keys), *keys, *args))
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        await self._load_scripts()
        return await self._call(self.client.evalsha(self._sha[name], len(keys), *keys, *args))

    # -- announce ----------------------------------------------------------------------------

    async def announce(self, info_hash: bytes, peer: Peer, event: Event, seeder: bool,
                       numwant: int, now: float, version: Version | None = None, *,
                       peer_ids: bool = True) -> SwarmAnswer:
        """Record and answer one announce in one round trip.

        With a `version`, the peer's record keeps it for later merges, and `stopped` leaves a
        tombstone for `tombstone_ttl`. `peer_ids=False` (compact answers) skips reading peer
        ids even when the store keeps them.
        """
        keys, args = self.announce_command(info_hash, peer, event, seeder, numwant, now,
                                           version, peer_ids)
        reply = await self._announce_call(keys, args)
        seeders, leechers, downloaded, compact, stored = reply[:5]
        if not stored:
            self._bound_hit(info_hash)
        found = reply[5] if len(reply) > 5 else None
        return SwarmAnswer(SwarmStats(seeders, leechers, downloaded),
                           _peers(compact, peer.family, found))

    def announce_command(self, info_hash: bytes, peer: Peer, event: Event, seeder: bool,
                         numwant: int, now: float, version: Version | None = None,
                         peer_ids: bool = True) -> tuple[tuple[bytes, ...], tuple[Any, ...]]:
        """KEYS and ARGV of the `_ANNOUNCE` call for one announce (the benchmark uses it too)."""
        keys = swarm_keys(self.prefix, info_hash)
        own_s, own_l, other_s, other_l, records, tombs = keys.family(peer.family)
        deadline = math.ceil(now + self.peer_ttl)
        key_ttl_ms = int((deadline - now) * 1000) + 1000
        keep = self.peer_ids or version is not None
        record = peer_record(peer.peer_id if self.peer_ids else b"", version) if keep else b""
        tomb = b""
        if version is not None and event is Event.STOPPED:
            tomb = repr(float(now + self.tombstone_ttl)).encode()
        return ((own_s, own_l, other_s, other_l, records, tombs, keys.dl),
                (peer.compact(), b"1" if seeder else b"0", _EVENT_CODES[event], repr(float(now)),
                 deadline, key_ttl_ms, max(numwant, 0), self.max_peers_per_swarm, record,
                 b"1" if self.peer_ids and peer_ids else b"0", self.downloaded_ttl_ms, tomb,
                 int(self.tombstone_ttl * 1000) + 1000))

    async def _announce_call(self, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        if not self.batch:
            return await self._evalsha("announce", keys, args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._pending is None:
            self._pending = _Batch()
            task = loop.create_task(self._flush(self._pending))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        self._pending.calls.append(((len(keys), *keys, *args), future))
        return await future

    async def _flush(self, batch: _Batch) -> None:
        """Send the tick's queued announces: alone as one EVALSHA, together as one pipeline."""
        if self._pending is batch:
            self._pending = None
        calls = batch.calls
        try:
            if len(calls) == 1:
                (command, future), = calls
                result = await self._evalsha("announce", command[1:1 + command[0]],
                                             command[1 + command[0]:])
                if not future.done():
                    future.set_result(result)
                return
            results = await self._pipeline(calls)
            if any(isinstance(r, NoScriptError) for r in results):
                await self._load_scripts()
                results = await self._pipeline(calls)
            for (_, future), result in zip(calls, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    failed = StoreUnavailable(f"Redis failed: {result}")
                    failed.__cause__ = result
                    future.set_exception(failed)
                else:
                    future.set_result(result)
        except BaseException as exc:  # never leave a caller hanging, whatever happened
            error = exc if isinstance(exc, Exception) else StoreUnavailable("store closing")
            for _, future in calls:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise

    async def _pipeline(self, calls: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]
                        ) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command, _ in calls:
            pipe.execute_command("EVALSHA", self._sha["announce"], *command)
        return list(await self._call(pipe.execute(raise_on_error=False)))

    def _bound_hit(self, info_hash: bytes) -> None:
        self.bounds_hit["peers_per_swarm"] += 1
        now = time.monotonic()
        if now - self._last_bound_log >= 60:
            self._last_bound_log = now
            log.warning(
                "Redis store bound hit: %d peers per swarm and family (torrent %s); new peers "
                "are answered but not stored. Raise MERIDIAN_MAX_PEERS_PER_SWARM if Redis has "
                "the memory.", self.max_peers_per_swarm, info_hash.hex())

    # -- merge -------------------------------------------------------------------------------

    async def apply(self, events: Sequence[AnnounceEvent], now: float) -> int:
        """Merge other regions' events, last writer wins per peer; return how many won.

        Pipelined (`_APPLY_CHUNK` events per round trip, grouped by node on a cluster); each
        event is one atomic script call, so the merge holds under concurrent announces.
        """
        won = 0
        stamp = repr(float(now))
        tombstone_ms = int(self.tombstone_ttl * 1000)
        for first in range(0, len(events), _APPLY_CHUNK):
            calls = []
            for event in events[first:first + _APPLY_CHUNK]:
                own_s, own_l, _, _, records, tombs = swarm_keys(
                    self.prefix, event.info_hash).family(family_of(event.ip))
                merged = record_of(event, tombstone_ms)
                expires = merged.expires_ms / 1000
                removed = merged.removed or expires <= now
                forget = max(expires, now)
                calls.append(((own_s, own_l, records, tombs,
                               swarm_keys(self.prefix, event.info_hash).dl),
                              (event.ip + event.port.to_bytes(2, "big"),
                               b"1" if event.seeder else b"0", _EVENT_CODES[event.kind], stamp,
                               repr(expires), int((expires - now) * 1000) + 1000,
                               self.max_peers_per_swarm,
                               peer_record(event.peer_id if self.peer_ids else b"",
                                           event.version),
                               version_bytes(event.version), b"1" if removed else b"0",
                               repr(forget), int((forget - now) * 1000) + 1000,
                               self.downloaded_ttl_ms)))
            for (keys, _), result in zip(calls, await self._scripts("apply", calls),
                                         strict=True):
                if result == -1:
                    self._bound_hit(info_hash_of_key(self.prefix, keys[0]) or b"")
                won += result != 0
        return won

    async def _scripts(self, name: str, calls: Sequence[tuple[Sequence[bytes], Sequence[Any]]]
                       ) -> list[Any]:
        """Many calls of one script in one pipeline; the scripts are reloaded once if lost."""
        def pipeline() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)

        if not calls:
            return []
        results = list(await self._call(pipeline()))
        if any(isinstance(r, NoScriptError) for r in results):
            await self._load_scripts()
            results = list(await self._call(pipeline()))
        for result in results:
            if isinstance(result, Exception):
                raise StoreUnavailable(f"Redis failed: {result}") from result
        return results

    def _flag_key(self, name: str) -> bytes:
        return self.prefix + b"flag:" + name.encode()

    async def get_flag(self, name: str) -> str | None:
        value = await self._call(self.client.get(self._flag_key(name)))
        return value.decode() if value is not None else None

    async def set_flag(self, name: str, value: str | None, ttl: float | None = None) -> None:
        """Set or clear a region flag; every node on this Redis sees it (Redis keeps the TTL)."""
        key = self._flag_key(name)
        if value is None:
            await self._call(self.client.delete(key))
        else:
            await self._call(self.client.set(key, value.encode(),
                                              px=int(ttl * 1000) if ttl else None))

    # -- scrape ------------------------------------------------------------------------------

    async def scrape(self, info_hashes: Sequence[bytes], now: float) -> list[SwarmStats]:
        """Counts for each hash in order: one pipeline of script calls (grouped by node)."""
        stamp = repr(float(now))
        keyed = [swarm_keys(self.prefix, h) for h in info_hashes]
        results = await self._scripts("scrape", [((k.s4, k.l4, k.s6, k.l6, k.dl), (stamp,))
                                                 for k in keyed])
        return [SwarmStats(*r) for r in results]

    async def _scan(self, node: ClusterNode | None, cursor: int, match: bytes, count: int
                    ) -> tuple[int, list[bytes]]:
        if node is None:
            assert isinstance(self.client, aioredis.Redis)
            reply = await self._call(self.client.scan(cursor, match=match, count=count))
        else:
            reply = await self._call(self.client.execute_command(
                "SCAN", cursor, "MATCH", match, "COUNT", count, target_nodes=node))
        cursor, keys = reply
        if isinstance(cursor, dict):  # redis-py keys a cluster SCAN cursor by node name
            cursor = next(iter(cursor.values()))
        return int(cursor), list(keys)

    def _nodes(self) -> list[ClusterNode | None]:
        if isinstance(self.client, RedisCluster):
            return list(self.client.get_primaries())
        return [None]

    def _peer_key_pattern(self, tombstones: bool = False) -> bytes:
        return _glob_escape(self.prefix) + (b"{*}:[slt][46]" if tombstones else b"{*}:[sl][46]")

    async def full_scrape(self, limit: int, now: float) -> dict[bytes, SwarmStats]:
        """Counts for up to `limit` torrents that hold live peer keys (SCAN, node by node)."""
        found: list[bytes] = []
        seen: set[bytes] = set()
        pattern = self._peer_key_pattern()
        for node in self._nodes():
            cursor = 0
            for _ in range(1_000_000):  # bounded; a SCAN pass ends long before
                cursor, keys = await self._scan(node, cursor, pattern, _GC_SCAN_COUNT)
                for key in keys:
                    info_hash = info_hash_of_key(self.prefix, key)
                    if info_hash is not None and info_hash not in seen:
                        seen.add(info_hash)
                        found.append(info_hash)
                if cursor == 0 or len(found) >= limit:
                    break
            if len(found) >= limit:
                break
        found = found[:limit]
        return dict(zip(found, await self.scrape(found, now), strict=True))

    # -- garbage -----------------------------------------------------------------------------

    async def collect_garbage(self, now: float, budget: int = 20_000) -> int:
        """Drop expired members from up to `budget` scanned keys per node; return peers removed.

        Key TTLs already remove idle swarms and announces expire their own family, so this
        only tidies sets of a family that stopped announcing. The SCAN cursor carries over
        between calls, so a large keyspace is covered over several calls.
        """
        removed = 0
        stamp = repr(float(now))
        pattern = self._peer_key_pattern(tombstones=True)
        for node in self._nodes():
            name = node.name if node is not None else ""
            cursor = self._gc_cursors.get(name, 0)
            examined = 0
            while True:
                cursor, keys = await self._scan(node, cursor, pattern, _GC_SCAN_COUNT)
                examined += max(len(keys), 1)
                families: dict[tuple[bytes, Family], None] = {}
                for key in keys:
                    info_hash = info_hash_of_key(self.prefix, key)
                    if info_hash is not None:
                        families[(info_hash, Family.IPV4 if key.endswith(b"4")
                                  else Family.IPV6)] = None
                for info_hash, family in families:
                    own_s, own_l, _, _, records, tombs = swarm_keys(
                        self.prefix, info_hash).family(family)
                    removed += int(await self._evalsha(
                        "collect", (own_s, own_l, records, tombs), (stamp,)))
                if cursor == 0 or examined >= budget:
                    break
            self._gc_cursors[name] = cursor
        return removed


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None, bool]:
    """(host, port) pairs, user, password and TLS flag of a `redis+cluster://` URL."""
    parts = urlsplit(url)
    hosts: list[tuple[str, int]] = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            raise ValueError(f"no host in Redis Cluster URL {url!r}")
        hosts.append((host, int(port) if port else 6379))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return hosts, user, password, parts.scheme.lower().startswith("rediss")


def open_redis_store(url: str, peer_ttl: float, *, max_peers_per_swarm: int = 0,
                     peer_ids: bool = True, downloaded_ttl: float = DEFAULT_DOWNLOADED_TTL,
                     timeout: float = DEFAULT_TIMEOUT, batch: bool = True,
                     max_connections: int = DEFAULT_MAX_CONNECTIONS,
                     tombstone_ttl: float | None = None) -> RedisPeerStore:
    """A `RedisPeerStore` for a store URL (see the module docstring); connects on `start`.

    `max_connections` bounds the connections per Redis server; a call that finds them all
    busy waits for one, within `timeout`.
    """
    scheme = url.split("://", 1)[0].lower()
    common: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    client: aioredis.Redis | RedisCluster
    if scheme in ("redis", "rediss"):
        # no client-side retries: the caller's breaker decides, and a retry would exceed the
        # timeout the announce path relies on
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout,
            retry=Retry(NoBackoff(), 0), **common)
        client = aioredis.Redis(connection_pool=pool)
    elif scheme in ("redis+cluster", "rediss+cluster"):
        hosts, user, password, tls = cluster_nodes(url)
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts],
                              username=user, password=password, ssl=tls,
                              max_connections=max_connections, **common)
    else:
        raise ValueError(f"not a Redis store URL: {url!r}")
    return RedisPeerStore(client, peer_ttl, max_peers_per_swarm=max_peers_per_swarm,
                          peer_ids=peer_ids, downloaded_ttl=downloaded_ttl, timeout=timeout,
                          batch=batch, tombstone_ttl=tombstone_ttl)
