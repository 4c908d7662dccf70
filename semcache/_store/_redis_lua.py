"""The Lua scripts of :class:`~semcache._store.RedisStore` (the key layout they keep is in
``_redis``'s docstring). Each mutation is one script, so Redis runs it as a unit."""

from __future__ import annotations

from typing import Final

# Shared by every script: helpers that keep the sets, counts and log in step.
LIB: Final = r"""
local P = ARGV[1]
local MAXCH = tonumber(ARGV[2])
local function logc(op, id, ns)
  local s = redis.call('INCR', P .. 'seq')
  redis.call('XADD', P .. 'log', 'MAXLEN', MAXCH, s .. '-0', 'o', op, 'i', id, 'n', ns)
end
local function del(id)
  local ek = P .. 'e:' .. id
  local f = redis.call('HMGET', ek, 'k', 'n')
  if not f[1] then return nil end
  local ns = f[2]
  redis.call('DEL', ek)
  redis.call('HDEL', P .. 'k', f[1])
  redis.call('ZREM', P .. 'lru', id)
  redis.call('ZREM', P .. 'lru:' .. ns, id)
  redis.call('ZREM', P .. 'exp', id)
  redis.call('ZREM', P .. 'exp:' .. ns, id)
  if redis.call('HINCRBY', P .. 'ns', ns, -1) <= 0 then redis.call('HDEL', P .. 'ns', ns) end
  logc('d', id, ns)
  return ns
end
local function touch(id, t)
  local ns = redis.call('HGET', P .. 'e:' .. id, 'n')
  if ns then
    redis.call('ZADD', P .. 'lru', 'GT', 'XX', t, id)
    redis.call('ZADD', P .. 'lru:' .. ns, 'GT', 'XX', t, id)
  end
end
"""

# ARGV: P, maxch, now, quota|'', max_entries|'', ntouch, (id, t)*, nmeta, (name, value)*,
# nentries, (key, ns, query, response, has_m, m, has_v, v, created, expires|'', has_o, o)*
PUT: Final = (
    LIB
    + r"""
local now = ARGV[3]
local quota = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local i = 6
local nt = tonumber(ARGV[i]); i = i + 1
local m = i + 2 * nt
local nm = tonumber(ARGV[m])
for j = m + 1, m + 2 * nm, 2 do  -- a setting held with another value: write nothing
  local held = redis.call('HGET', P .. 'meta', ARGV[j])
  if held and held ~= ARGV[j + 1] then return {'meta', ARGV[j], held} end
end
for _ = 1, nt do touch(ARGV[i], ARGV[i + 1]); i = i + 2 end
i = i + 1
for _ = 1, nm do redis.call('HSETNX', P .. 'meta', ARGV[i], ARGV[i + 1]); i = i + 2 end
local ne = tonumber(ARGV[i]); i = i + 1
local ids, replaced, expired, lru = {}, {}, {}, {}
local ns = nil
for _ = 1, ne do
  local key, n = ARGV[i], ARGV[i + 1]
  ns = ns or n
  local old = redis.call('HGET', P .. 'k', key)
  if old then
    local ons = del(old)
    if ons then table.insert(replaced, {tonumber(old), ons}) end
  end
  local id = string.format('%016d', redis.call('INCR', P .. 'id'))
  local ek = P .. 'e:' .. id
  redis.call('HSET', ek, 'k', key, 'n', n, 'q', ARGV[i + 2], 'r', ARGV[i + 3], 'c', ARGV[i + 8])
  if ARGV[i + 4] == '1' then redis.call('HSET', ek, 'm', ARGV[i + 5]) end
  if ARGV[i + 6] == '1' then redis.call('HSET', ek, 'v', ARGV[i + 7]) end
  if ARGV[i + 10] == '1' then redis.call('HSET', ek, 'o', ARGV[i + 11]) end
  local exp = ARGV[i + 9]
  if exp ~= '' then
    redis.call('HSET', ek, 'x', exp)
    redis.call('ZADD', P .. 'exp', exp, id)
    redis.call('ZADD', P .. 'exp:' .. n, exp, id)
  end
  redis.call('HSET', P .. 'k', key, id)
  redis.call('ZADD', P .. 'lru', ARGV[i + 8], id)
  redis.call('ZADD', P .. 'lru:' .. n, ARGV[i + 8], id)
  redis.call('HINCRBY', P .. 'ns', n, 1)
  logc('p', id, n)
  table.insert(ids, tonumber(id))
  i = i + 12
end
local function evict(size, lruk, expk, limit)
  local excess = size - limit
  if excess <= 0 then return end
  for _, id in ipairs(redis.call('ZRANGE', expk, '-inf', now, 'BYSCORE', 'LIMIT', 0, excess)) do
    local ons = del(id)
    table.insert(expired, {tonumber(id), ons})
    excess = excess - 1
  end
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', lruk, 0, excess - 1)) do
      local ons = del(id)
      table.insert(lru, {tonumber(id), ons})
    end
  end
end
if ns then
  if quota then
    local size = tonumber(redis.call('HGET', P .. 'ns', ns) or '0')
    evict(size, P .. 'lru:' .. ns, P .. 'exp:' .. ns, quota)
  end
  if cap then evict(redis.call('ZCARD', P .. 'lru'), P .. 'lru', P .. 'exp', cap) end
end
return {ids, replaced, expired, lru}
"""
)

# ARGV: P, maxch, mode ('key' | 'ids'), values...
DELETE: Final = (
    LIB
    + r"""
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if ARGV[3] == 'key' then id = redis.call('HGET', P .. 'k', ARGV[i]) end
  if id then
    local ns = del(id)
    if ns then table.insert(out, {tonumber(id), ns}) end
  end
end
return out
"""
)

# ARGV: P, maxch, now, ns|'' , has_ns
DELETE_EXPIRED: Final = (
    LIB
    + r"""
local expk = P .. 'exp'
if ARGV[5] == '1' then expk = P .. 'exp:' .. ARGV[4] end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', expk, '-inf', ARGV[3], 'BYSCORE')) do
  local ns = del(id)
  if ns then table.insert(out, {tonumber(id), ns}) end
end
return out
"""
)

# ARGV: P, maxch, ns|'', has_ns (the entries, the error-budget counters and outcome logs)
CLEAR: Final = (
    LIB
    + r"""
local lruk = P .. 'lru'
if ARGV[4] == '1' then lruk = P .. 'lru:' .. ARGV[3] end
local n = 0
for _, id in ipairs(redis.call('ZRANGE', lruk, 0, -1)) do
  if del(id) then n = n + 1 end
end
for _, kind in ipairs({'qc', 'ql'}) do
  local namespaces = redis.call('SMEMBERS', P .. kind)
  if ARGV[4] == '1' then namespaces = {ARGV[3]} end
  for _, ns in ipairs(namespaces) do
    redis.call('DEL', P .. kind .. ':' .. ns)
    redis.call('SREM', P .. kind, ns)
  end
end
return n
"""
)

# ARGV: P, (id, record)* -> how many were written (an id with no entry is skipped: a
# record never creates a hash, and nothing else of the entry moves)
WRITE_RECORDS: Final = r"""
local n = 0
for i = 2, #ARGV, 2 do
  local ek = ARGV[1] .. 'e:' .. ARGV[i]
  if redis.call('EXISTS', ek) == 1 then
    redis.call('HSET', ek, 'o', ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

# ARGV: P, ns, (name, delta)*
ADD_COUNTS: Final = r"""
local ck = ARGV[1] .. 'qc:' .. ARGV[2]
redis.call('SADD', ARGV[1] .. 'qc', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HINCRBYFLOAT', ck, ARGV[i], ARGV[i + 1]) end
return 0
"""

# ARGV: P, ns, keep, row+ (appended in order, then all but the newest keep dropped;
# RPUSH in slices: Lua's unpack takes a few thousand values at most)
ADD_OUTCOMES: Final = r"""
local lk = ARGV[1] .. 'ql:' .. ARGV[2]
redis.call('SADD', ARGV[1] .. 'ql', ARGV[2])
for lo = 4, #ARGV, 1000 do
  redis.call('RPUSH', lk, unpack(ARGV, lo, math.min(lo + 999, #ARGV)))
end
redis.call('LTRIM', lk, -tonumber(ARGV[3]), -1)
return 0
"""

# ARGV: P, maxch, (id, t)*
TOUCH: Final = (
    LIB
    + r"""
for i = 3, #ARGV, 2 do touch(ARGV[i], ARGV[i + 1]) end
return 0
"""
)

# ARGV: P, keep
PRUNE: Final = r"""
return redis.call('XTRIM', ARGV[1] .. 'log', 'MAXLEN', tonumber(ARGV[2]))
"""

# ARGV: P, key -> the entry's fields, or false (one round trip for the exact layer)
GET_BY_KEY: Final = r"""
local id = redis.call('HGET', ARGV[1] .. 'k', ARGV[2])
if not id then return false end
local f = redis.call('HMGET', ARGV[1] .. 'e:' .. id, 'k', 'n', 'q', 'r', 'm', 'c', 'x', 'o')
if not f[1] then return false end
table.insert(f, 1, id)
return f
"""

# ARGV: P, since, check_identity ('1' | '0'), identity -> {-1} when the caller must
# rebuild (another identity, or the sequence is below since), else
# {last, first or false, flat records (seq, op, id, ns)*}, all in one snapshot
CHANGES: Final = r"""
local P = ARGV[1]
if ARGV[3] == '1' and redis.call('HGET', P .. 'meta', 'store_id') ~= ARGV[4] then
  return {-1}
end
local last = tonumber(redis.call('GET', P .. 'seq') or '0')
local since = tonumber(ARGV[2])
if since > last then return {-1} end
if since == last then return {last, false, {}} end
local first = redis.call('XRANGE', P .. 'log', '-', '+', 'COUNT', 1)
if #first == 0 then return {last, false, {}} end
local firstseq = tonumber(string.match(first[1][1], '^(%d+)'))
if since + 1 < firstseq then return {last, firstseq, {}} end
local out = {}
for _, rec in ipairs(redis.call('XRANGE', P .. 'log', '(' .. since .. '-0', '+')) do
  local f = rec[2]
  table.insert(out, string.match(rec[1], '^(%d+)'))
  table.insert(out, f[2])
  table.insert(out, f[4])
  table.insert(out, f[6])
end
return {last, firstseq, out}
"""

# ARGV: P, a fresh token -> the store's identity (the token, if it had none yet)
IDENTITY: Final = r"""
redis.call('HSETNX', ARGV[1] .. 'meta', 'store_id', ARGV[2])
return redis.call('HGET', ARGV[1] .. 'meta', 'store_id')
"""
