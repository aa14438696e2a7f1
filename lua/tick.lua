-- tick: one admission step for one concert, run by every instance's timer; exactly one of
-- them does the work per tick period.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      ZSET user -> last seen (ms)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] settings  HASH per-concert overrides (admit_per_tick, tick_ms, max_active, access_ttl_secs)
-- ARGV[1..4] defaults: admit_per_tick, tick_ms, max_active, access_ttl_secs
-- ARGV[5] idle limit (ms)
--
-- Invariants:
-- * at most one tick per period in total, however many instances call: the period is claimed
--   here, atomically, against Redis's own clock (period = floor(now / tick_ms); a tick runs only
--   if the last run fell in an earlier period);
-- * after a tick, admitted <= max_active: expired admissions leave first, then at most
--   min(admit_per_tick, max_active - admitted) users enter, in arrival (seq) order;
-- * idle users (not seen for the idle limit) never enter; they lose their place.
-- Work per call is bounded (expiry and idle removal in batches), so Redis never stalls.
--
-- Returns { ran, admitted_now, expired_now, idle_now, waiting, admitted, admitted_total,
--           next_due_ms, tick_ms, max_active, measured rate in users per 1000 s }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local s = redis.call('HMGET', KEYS[6], 'admit_per_tick', 'tick_ms', 'max_active', 'access_ttl_secs')
local per_tick = tonumber(s[1] or ARGV[1])
local tick_ms = tonumber(s[2] or ARGV[2])
local max_active = tonumber(s[3] or ARGV[3])
local ttl_ms = tonumber(s[4] or ARGV[4]) * 1000
local idle_ms = tonumber(ARGV[5])

local period = math.floor(now / tick_ms)
local next_due = (period + 1) * tick_ms - now
local last = tonumber(redis.call('HGET', KEYS[5], 'last_tick_ms') or '-1')
if last >= 0 and math.floor(last / tick_ms) >= period then
  return { 0, 0, 0, 0, 0, 0, 0, next_due, tick_ms, max_active, 0 }
end
redis.call('HSET', KEYS[5], 'last_tick_ms', now)
redis.call('HINCRBY', KEYS[5], 'ticks_total', 1)

-- 1. Admissions that ran out leave (their access tokens stop working with them).
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 10000)
for _, user in ipairs(expired) do
  redis.call('ZREM', KEYS[3], user)
  redis.call('HDEL', KEYS[4], user)
end

-- 2. Idle users lose their place.
local cutoff = now - idle_ms
local idle = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, 10000)
for _, user in ipairs(idle) do
  redis.call('ZREM', KEYS[1], user)
  redis.call('ZREM', KEYS[2], user)
end
local idle_count = #idle

-- 3. Admit, in arrival order, within both limits.
local room = max_active - redis.call('ZCARD', KEYS[3])
local want = math.min(per_tick, room)
local admitted_now = 0
while admitted_now < want do
  local popped = redis.call('ZPOPMIN', KEYS[1], want - admitted_now)
  if #popped == 0 then
    break
  end
  for i = 1, #popped, 2 do
    local user, seq = popped[i], popped[i + 1]
    local seen = tonumber(redis.call('ZSCORE', KEYS[2], user) or '0')
    redis.call('ZREM', KEYS[2], user)
    if seen < cutoff then
      idle_count = idle_count + 1
    else
      redis.call('ZADD', KEYS[3], now + ttl_ms, user)
      redis.call('HSET', KEYS[4], user, seq)
      admitted_now = admitted_now + 1
    end
  end
end

local waiting = redis.call('ZCARD', KEYS[1])
local active = redis.call('ZCARD', KEYS[3])
local total = redis.call('HINCRBY', KEYS[5], 'admitted_total', admitted_now)
redis.call('HINCRBY', KEYS[5], 'expired_total', #expired)
redis.call('HINCRBY', KEYS[5], 'idle_total', idle_count)

-- 4. The measured admission rate (users/s, moving average), for ETAs. Only ticks that left
-- people waiting measure capacity; a tick that emptied the line says nothing about it.
local rate = tonumber(redis.call('HGET', KEYS[5], 'rate') or '-1')
if waiting > 0 then
  local observed = admitted_now * 1000 / tick_ms
  if rate < 0 then
    rate = observed
  else
    -- Exponential moving average with a 30 s time constant, whatever the tick length.
    local alpha = 1 - math.exp(-tick_ms / 30000)
    rate = (1 - alpha) * rate + alpha * observed
  end
  redis.call('HSET', KEYS[5], 'rate', string.format('%.3f', rate))
end

return { 1, admitted_now, #expired, idle_count, waiting, active, total, next_due, tick_ms, max_active,
         math.floor(math.max(rate, 0) * 1000) }
