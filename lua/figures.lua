-- figures: a concert's live queue figures and settings, for the admin API. Read-only.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] admitted  ZSET user -> admission end (ms)
-- KEYS[3] stats     HASH concert figures
-- KEYS[4] settings  HASH per-concert overrides
-- KEYS[5] waits     key PREFIX of per-minute wait histograms (see tick.lua)
--
-- Returns { waiting, admitted (live only), admitted_total, admit_per_tick|false, tick_ms|false,
--           max_active|false, access_ttl_secs|false, rate, sale_start_ms (0: none),
--           pre-queue places (before the start), draws_total,
--           then 17 wait-bucket counts summed over the last 15 minutes }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[4], 'admit_per_tick', 'tick_ms', 'max_active', 'access_ttl_secs', 'sale_start_ms')
local start = tonumber(s[5] or '0')
local waiting = redis.call('ZCARD', KEYS[1])
local out = {
  waiting,
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[3], 'admitted_total') or '0'),
  s[1], s[2], s[3], s[4],
  redis.call('HGET', KEYS[3], 'rate') or '0',
  start,
  now < start and waiting or 0,
  tonumber(redis.call('HGET', KEYS[3], 'draws_total') or '0'),
}
local sums = {}
for j = 1, 17 do
  sums[j] = 0
end
local minute = math.floor(now / 60000)
for m = minute - 14, minute do
  local h = redis.call('HGETALL', KEYS[5] .. m)
  for i = 1, #h, 2 do
    local j = tonumber(h[i])
    sums[j] = sums[j] + tonumber(h[i + 1])
  end
end
for j = 1, 17 do
  out[#out + 1] = sums[j]
end
return out
