-- tick: one admission step for one concert, run by every instance's timer; exactly one of
-- them does the work per tick period.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] settings  HASH per-concert overrides (admit_per_tick, tick_ms, max_active, access_ttl_secs)
-- KEYS[7] ended     HASH user -> "seq:reason" of the last admission that ended
-- KEYS[8] seq       STRING arrival counter (read only)
-- KEYS[9] clock     ZSET counter value -> when (ms): a sparse record of when each arrival
--                   number was reached, so a wait can be measured without storing join times
-- KEYS[10] waits    key PREFIX of per-minute wait histograms: HASH <prefix><minute>, field
--                   bucket index -> admissions (kept 20 minutes)
-- ARGV[1..4] defaults: admit_per_tick, tick_ms, max_active, access_ttl_secs
-- ARGV[5] idle limit (s)
-- ARGV[6] the most places one call admits, and the most admissions it ends (optional; 10,000
--         admissions ended and no admission limit when absent)
-- ARGV[7] 'more' to go on with the tick this period already claimed (optional): a call that
--         stopped at ARGV[6] with work left says so (the last value it returns), and the
--         instance that claimed the period sends 'more' calls until none is left
--
-- Invariants:
-- * at most one tick per period in total, however many instances call: the period is claimed
--   here, atomically, against Redis's own clock (period = floor(now / tick_ms); a tick runs only
--   if the last run fell in an earlier period);
-- * after a tick, admitted <= max_active: expired admissions leave first, then at most
--   min(admit_per_tick, max_active - admitted) users enter, in arrival (seq) order;
-- * idle users (not seen for the idle limit) never enter: they are dropped when they reach
--   the front, and a rolling scan (scan.lua, sent in chunks after each tick that ran) drops
--   them from the rest of the line, covering the whole line about once per idle period.
-- * before the sale starts (settings sale_start_ms) nobody enters and nobody is idle; the
--   first tick of the sale records the draw (how many pre-queue places there are: their order
--   was fixed, at random, when each was taken — see join.lua) exactly once, and admission
--   starts from the front of that order;
-- * a tick's admissions may take several calls (ARGV[6], ARGV[7]): the period's allowance
--   (admit_per_tick) is recorded at the claim and counted down by every call, so a period
--   admits at most admit_per_tick in total however many calls share it; a 'more' call in a
--   later period than the one claimed does nothing, so an allowance that was not used up in
--   its period (an instance that stopped between calls) lapses and is never carried over.
-- Work per call is bounded (at most ARGV[6] expiries and ARGV[6] admissions; nothing here walks
-- the line). Places are admitted, and admissions ended, a bucket or a thousand at a time (a few
-- commands per call, not a few per place): ~7 µs of Redis per place admitted and later
-- expired, so a call of 1,000 holds its shard for ~7 ms (BENCHMARKS.md). Every other command of
-- the shard waits meanwhile, which is why a tick of 10,000 or 100,000 goes in several calls.
--
-- Returns { ran, admitted_now, expired_now, idle_now, waiting, admitted, admitted_total,
--           next_due_ms, tick_ms, max_active, measured rate in users per 1000 s (-1000 when
--           nothing is measured yet), admit_per_tick, sale_start_ms (0: none), the draw (the
--           pre-queue places drawn by this tick, -1 when it drew nothing, -2 before the
--           start), then 17 counts of this tick's admissions by wait (s): <=1, <=5, <=10,
--           <=30, <=60, <=120, <=300, <=600, <=900, <=1200, <=1800, <=2700, <=3600, <=5400,
--           <=7200, <=10800, more, then how many places the idle scan should cover now (0 when
--           none), then 1 when this tick has work left for a 'more' call, else 0 }
-- The figures of a call that leaves work for another (waiting, admitted, the rate) are
-- provisional: the last call of the period has the final ones, and only it measures the rate.
-- Instances that lose the claim still get the pace figures, which keep their ETAs fresh.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local s = redis.call('HMGET', KEYS[6], 'admit_per_tick', 'tick_ms', 'max_active', 'access_ttl_secs', 'sale_start_ms')
local per_tick = tonumber(s[1] or ARGV[1])
local tick_ms = tonumber(s[2] or ARGV[2])
local max_active = tonumber(s[3] or ARGV[3])
local ttl_ms = tonumber(s[4] or ARGV[4]) * 1000
local idle = tonumber(ARGV[5])
local start = tonumber(s[5] or '0')
local chunk = tonumber(ARGV[6] or '0')
local more = ARGV[7] == 'more'
-- Pre-queue places number below this (join.lua); everyone after the start above it.
local PRE_QUEUE_END = 1125899906842624 -- 2^50
local LIMITS = { 1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800 }
local function no_waits(out)
  for _ = 1, #LIMITS + 1 do
    out[#out + 1] = 0
  end
  return out
end
-- The answer of a tick that did not run: no admissions by wait, no scan due, nothing left.
local function not_run(out)
  out = no_waits(out)
  out[#out + 1] = 0
  out[#out + 1] = 0
  return out
end

local period = math.floor(now / tick_ms)
local next_due = (period + 1) * tick_ms - now
if now < start then
  -- Before the sale: nobody enters, nobody is idle. Come back at the start at the latest.
  return not_run({ 0, 0, 0, 0, redis.call('ZCARD', KEYS[1]), 0, 0, math.min(next_due, start - now),
                   tick_ms, max_active, -1000, per_tick, start, -2 })
end
local function no_work()
  local measured = tonumber(redis.call('HGET', KEYS[5], 'rate') or '-1')
  return not_run({ 0, 0, 0, 0, 0, 0, 0, next_due, tick_ms, max_active, math.floor(measured * 1000),
                   per_tick, start, -1 })
end
-- What this period may still admit: the whole allowance at the claim, what earlier calls left
-- of it for a 'more' call of the same period.
local owed
if more then
  local rest = redis.call('HMGET', KEYS[5], 'owed', 'owed_period')
  if tonumber(rest[2] or '-1') ~= period then
    return no_work()
  end
  owed = tonumber(rest[1] or '0')
else
  local last = tonumber(redis.call('HGET', KEYS[5], 'last_tick_ms') or '-1')
  if last >= 0 and math.floor(last / tick_ms) >= period then
    return no_work()
  end
  redis.call('HSET', KEYS[5], 'last_tick_ms', now, 'period_admitted', 0)
  redis.call('HINCRBY', KEYS[5], 'ticks_total', 1)
  owed = per_tick
end
if chunk <= 0 then
  chunk = math.huge
end

-- The draw: the first tick of the sale says how many pre-queue places there are, once.
local drawn = -1
if not more and start > 0 and not redis.call('HGET', KEYS[5], 'drawn_ms') then
  drawn = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. PRE_QUEUE_END)
  redis.call('HSET', KEYS[5], 'drawn_ms', now, 'drawn_count', drawn)
  redis.call('HINCRBY', KEYS[5], 'draws_total', 1)
end

-- The clock: when the arrival counter reached its current value (one entry per 5 s at most).
local counter = tonumber(redis.call('GET', KEYS[8]) or '0')
local latest = redis.call('ZRANGE', KEYS[9], -1, -1, 'WITHSCORES')
if not more and counter > 0 and (#latest == 0 or (tonumber(latest[2]) < counter and now - tonumber(latest[1]) >= 5000)) then
  redis.call('ZADD', KEYS[9], counter, now)
  redis.call('ZREMRANGEBYRANK', KEYS[9], 0, -40000)
end
-- How long the admitted places waited: from the start for pre-queue places, else from when the
-- counter reached their number (first clock entry at or above it; a few seconds late at most).
-- `seqs` ascend (ZPOPMIN's order), so one read of the clock from the first of them serves
-- them all, walked alongside; a place past what that read fetched asks on its own.
local waits = no_waits({})
local start_s = math.floor(start / 1000)
local function count_waits(seqs)
  local clock, from = {}, nil
  for _, seq in ipairs(seqs) do
    if seq >= PRE_QUEUE_END then
      from = seq
      break
    end
  end
  local want_entries = #seqs + 1
  if from then
    clock = redis.call('ZRANGEBYSCORE', KEYS[9], string.format('%d', from), '+inf', 'WITHSCORES', 'LIMIT', 0, want_entries)
  end
  local c = 1
  local last_since, b = nil, nil
  for _, seq in ipairs(seqs) do
    local since
    if seq < PRE_QUEUE_END then
      since = start
    else
      while c <= #clock and tonumber(clock[c + 1]) < seq do
        c = c + 2
      end
      if c <= #clock then
        since = tonumber(clock[c])
      elseif #clock < 2 * want_entries then
        since = now -- the clock has no entry at or above it (yet)
      else
        local e = redis.call('ZRANGEBYSCORE', KEYS[9], string.format('%d', seq), '+inf', 'LIMIT', 0, 1)
        since = tonumber(e[1] or now)
      end
    end
    -- (neighbours mostly share a clock entry, and so a bucket)
    if since ~= last_since then
      local secs = math.max(0, now - since) / 1000
      b = #LIMITS + 1
      for j, limit in ipairs(LIMITS) do
        if secs <= limit then
          b = j
          break
        end
      end
      last_since = since
    end
    waits[b] = waits[b] + 1
  end
end

local cutoff = tonumber(t[1]) - idle

-- Runs `command key fields...` for `list` in pieces of at most 1,000 values (unpack's stack
-- limit is a few thousand), so a tick's hundreds or thousands of places cost a few commands,
-- not a few per place.
local function in_pieces(command, key, list)
  for from = 1, #list, 1000 do
    redis.call(command, key, unpack(list, from, math.min(from + 999, #list)))
  end
end

-- 1. Admissions that ran out leave (their access tokens stop working with them).
local expire_at_most = math.min(chunk, 10000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, expire_at_most)
if #expired > 0 then
  in_pieces('ZREM', KEYS[3], expired)
  local ended = {}
  for from = 1, #expired, 1000 do
    local seqs = redis.call('HMGET', KEYS[4], unpack(expired, from, math.min(from + 999, #expired)))
    for j = 1, #seqs do
      if seqs[j] then
        ended[#ended + 1] = expired[from + j - 1]
        ended[#ended + 1] = seqs[j] .. ':expired'
      end
    end
  end
  in_pieces('HSET', KEYS[7], ended)
  in_pieces('HDEL', KEYS[4], expired)
  redis.call('EXPIRE', KEYS[7], 172800)
end

-- 2. Admit, in arrival order, within both limits; idle users at the front are dropped. Each
-- popped place's last-seen entry goes (read and deleted once per bucket of 128 seqs: popped
-- places are neighbours); the admitted enter with one ZADD and one HSET per 1,000.
local idle_count = 0
local room = max_active - redis.call('ZCARD', KEYS[3])
local want = math.min(owed, room, chunk)
local admitted_now = 0
local ends_text = string.format('%d', now + ttl_ms)
while admitted_now < want do
  local popped = redis.call('ZPOPMIN', KEYS[1], want - admitted_now)
  if #popped == 0 then
    break
  end
  local seqs, last_seen = {}, {}
  local i = 1
  while i <= #popped do
    local number = math.floor(tonumber(popped[i + 1]) / 128)
    local bucket = KEYS[2] .. string.format('%d', number)
    local fields, first = {}, #seqs + 1
    while i <= #popped do
      local seq = tonumber(popped[i + 1])
      if math.floor(seq / 128) ~= number then
        break
      end
      seqs[#seqs + 1] = seq
      fields[#fields + 1] = string.format('%d', seq % 128)
      i = i + 2
    end
    local marks = redis.call('HMGET', bucket, unpack(fields))
    for j = 1, #fields do
      last_seen[first + j - 1] = math.max(tonumber(marks[j] or '0'), start_s)
    end
    redis.call('HDEL', bucket, unpack(fields))
  end
  local adds, numbers, entered = {}, {}, {}
  for k = 1, #seqs do
    if last_seen[k] < cutoff then
      idle_count = idle_count + 1
    else
      local user = popped[2 * k - 1]
      adds[#adds + 1] = ends_text
      adds[#adds + 1] = user
      numbers[#numbers + 1] = user
      numbers[#numbers + 1] = popped[2 * k]
      entered[#entered + 1] = seqs[k]
    end
  end
  in_pieces('ZADD', KEYS[3], adds)
  in_pieces('HSET', KEYS[4], numbers)
  count_waits(entered)
  admitted_now = admitted_now + #entered
end

-- 3. The rolling idle scan is not done here: its window grows with the line (up to 20,000
-- places at 2.4 million), and one such call blocked Redis for ~100 ms with 1,000,000 waiting.
-- This tick only says how much of the line is due this period (the last value returned); the
-- instance that ran it sends scan.lua in chunks (of 1,000 places; the script takes at most 2,000).
local waiting = redis.call('ZCARD', KEYS[1])
local scan_due = 0
if waiting > 0 then
  scan_due = math.max(200, math.min(20000, math.ceil(waiting * tick_ms / (idle * 1000))))
end

local active = redis.call('ZCARD', KEYS[3])
local total = redis.call('HINCRBY', KEYS[5], 'admitted_total', admitted_now)
redis.call('HINCRBY', KEYS[5], 'expired_total', #expired)
redis.call('HINCRBY', KEYS[5], 'idle_total', idle_count)
local period_admitted = redis.call('HINCRBY', KEYS[5], 'period_admitted', admitted_now)

-- Work left for a 'more' call: admissions this call stopped short of at its limit (while the
-- allowance and the line last), or ended admissions past its limit (they free room).
owed = owed - admitted_now
local left = (#expired == expire_at_most) or (admitted_now == chunk and owed > 0 and waiting > 0)
if left then
  redis.call('HSET', KEYS[5], 'owed', string.format('%d', owed), 'owed_period', string.format('%d', period))
else
  redis.call('HDEL', KEYS[5], 'owed', 'owed_period')
end

-- 4. The measured admission rate (users/s, moving average), for ETAs, by the period's last
-- call (from all of the period's admissions). Only ticks that left people waiting while
-- admission was open measure capacity: a tick that emptied the line, or one of a paused line,
-- says nothing about how fast the line moves when it moves.
local rate = tonumber(redis.call('HGET', KEYS[5], 'rate') or '-1')
if not left and waiting > 0 and per_tick > 0 then
  local observed = period_admitted * 1000 / tick_ms
  if rate < 0 then
    rate = observed
  else
    -- Exponential moving average with a 30 s time constant, whatever the tick length.
    local alpha = 1 - math.exp(-tick_ms / 30000)
    rate = (1 - alpha) * rate + alpha * observed
  end
  redis.call('HSET', KEYS[5], 'rate', string.format('%.3f', rate))
end

if admitted_now > 0 then
  local minute = KEYS[10] .. math.floor(now / 60000)
  for j, n in ipairs(waits) do
    if n > 0 then
      redis.call('HINCRBY', minute, j, n)
    end
  end
  redis.call('EXPIRE', minute, 1200)
end

local out = { 1, admitted_now, #expired, idle_count, waiting, active, total, next_due, tick_ms, max_active,
              math.floor(rate * 1000), per_tick, start, drawn }
for _, n in ipairs(waits) do
  out[#out + 1] = n
end
out[#out + 1] = scan_due
out[#out + 1] = left and 1 or 0
return out
