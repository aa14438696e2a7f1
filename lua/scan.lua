-- scan: one chunk of a line's rolling idle scan. After each tick that ran, the instance that ran
-- it sends this in chunks until the period's share of the line (tick.lua's last value) is
-- covered, so that the whole line is looked at about once per idle period and no single call
-- walks more than a chunk of it (the chunk is capped at 2,000 places: a few milliseconds).
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] stats     HASH concert figures (scan_rank: where the scan goes on; idle_total)
-- KEYS[4] settings  HASH per-concert settings (sale_start_ms)
-- ARGV[1] idle limit (s)
-- ARGV[2] places to look at in this chunk
--
-- Invariants: only places not seen for the idle limit are removed (with their last-seen
-- entry); before the sale starts nothing is idle, and after it a place's idle clock starts at
-- the later of its last mark and the start (as in status.lua and tick.lua). Any instance may
-- run it at any time: removing an idle place twice is a no-op, and a cursor moved by two
-- instances at once only makes the scan go round faster.
--
-- Returns { places looked at, places removed, places still waiting }.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = tonumber(redis.call('HGET', KEYS[4], 'sale_start_ms') or '0')
local waiting = redis.call('ZCARD', KEYS[1])
if now < start or waiting == 0 then
  return { 0, 0, waiting }
end
local chunk = math.max(1, math.min(2000, tonumber(ARGV[2])))
local cutoff = now_s - tonumber(ARGV[1])
local start_s = math.floor(start / 1000)
local cursor = tonumber(redis.call('HGET', KEYS[3], 'scan_rank') or '0')
if cursor >= waiting then
  cursor = 0
end
local window = redis.call('ZRANGE', KEYS[1], cursor, cursor + chunk - 1, 'WITHSCORES')
local dropped = 0
for i = 1, #window, 2 do
  local seq = tonumber(window[i + 1])
  local bucket = KEYS[2] .. string.format('%.0f', math.floor(seq / 128))
  local field = string.format('%.0f', seq % 128)
  if math.max(tonumber(redis.call('HGET', bucket, field) or '0'), start_s) < cutoff then
    redis.call('ZREM', KEYS[1], window[i])
    redis.call('HDEL', bucket, field)
    dropped = dropped + 1
  end
end
redis.call('HSET', KEYS[3], 'scan_rank', cursor + #window / 2 - dropped)
if dropped > 0 then
  redis.call('HINCRBY', KEYS[3], 'idle_total', dropped)
end
return { #window / 2, dropped, waiting - dropped }
