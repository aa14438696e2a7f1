-- figures: a concert's live queue figures and settings, for the admin API. Read-only.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] admitted  ZSET user -> admission end (ms)
-- KEYS[3] stats     HASH concert figures
-- KEYS[4] settings  HASH per-concert overrides
--
-- Returns { waiting, admitted (live only), admitted_total, admit_per_tick|false, tick_ms|false,
--           max_active|false, access_ttl_secs|false, rate }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[4], 'admit_per_tick', 'tick_ms', 'max_active', 'access_ttl_secs')
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[3], 'admitted_total') or '0'),
  s[1], s[2], s[3], s[4],
  redis.call('HGET', KEYS[3], 'rate') or '0',
}
