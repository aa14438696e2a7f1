-- status: where is this place now? Also marks the user as still here.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      ZSET user -> last seen (ms)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] settings  HASH per-concert overrides
-- ARGV[1] user id
-- ARGV[2] seq named by the queue token
-- ARGV[3] idle limit (ms)
--
-- Invariants: read-mostly; the only writes are the user's own last-seen time, and removing
-- the user's own place when it has been idle past the limit (the tick would remove it anyway).
-- A place answers only to the token that created it (same seq).
--
-- Returns one of
--   { 'admitted', admission_end_ms }
--   { 'waiting', position, measured_rate_per_s, admit_per_tick|false, tick_ms|false }
--   { 'gone' }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, seq = ARGV[1], tonumber(ARGV[2])

local ends = redis.call('ZSCORE', KEYS[3], user)
if ends then
  if tonumber(ends) > now and tonumber(redis.call('HGET', KEYS[4], user)) == seq then
    return { 'admitted', tonumber(ends) }
  end
  return { 'gone' }
end

local score = redis.call('ZSCORE', KEYS[1], user)
if not score or tonumber(score) ~= seq then
  return { 'gone' }
end
local last = tonumber(redis.call('ZSCORE', KEYS[2], user) or '0')
if last < now - tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[1], user)
  redis.call('ZREM', KEYS[2], user)
  redis.call('HINCRBY', KEYS[5], 'idle_total', 1)
  return { 'gone' }
end
redis.call('ZADD', KEYS[2], now, user)
local rank = redis.call('ZRANK', KEYS[1], user)
local s = redis.call('HMGET', KEYS[6], 'admit_per_tick', 'tick_ms')
return { 'waiting', rank + 1, redis.call('HGET', KEYS[5], 'rate') or '-1', s[1], s[2] }
