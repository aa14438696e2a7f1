-- scan: one chunk of a line's rolling idle scan. After each tick that ran, the instance that ran
-- it sends this in chunks until the period's share of the line (tick.lua's last value) is
-- covered, so that the whole line is looked at about once per idle period and no single call
-- walks more than a chunk of it (the gateway sends 1,000 places; the script takes at most 2,000).
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
-- Cost: the window's places are in seq order, so neighbours share a last-seen bucket (128
-- seqs). Each bucket is read whole with one HGETALL (one walk of a small hash, where an HGET or
-- HMGET per place searches it again for every field) and its idle marks go with one HDEL; the
-- idle users leave with one ZREM per 1,000. A command from Lua costs about as much as a place's
-- own work: with three per place a chunk cost 3.2 µs a place when every place was fresh and
-- 4.7 µs when a long line's fans had all gone at once; now 1.7 and 2.7 µs (BENCHMARKS.md).
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

-- Runs of places in one bucket: the bucket's name, then the mark field number (seq % 128)
-- and the user of each of its places.
local buckets, slots, users = {}, {}, {}
local last_number = nil
for i = 1, #window, 2 do
  local seq = tonumber(window[i + 1])
  local number = math.floor(seq / 128)
  if number ~= last_number then
    buckets[#buckets + 1] = KEYS[2] .. string.format('%d', number)
    slots[#buckets], users[#buckets] = {}, {}
    last_number = number
  end
  local s = slots[#buckets]
  s[#s + 1] = seq - number * 128
  users[#buckets][#s] = window[i]
end

-- Each bucket is read whole (one walk of a small hash) and its idle places' marks deleted
-- with one HDEL; the idle users leave the line with one ZREM per 1,000.
local gone = {}
for b = 1, #buckets do
  local all = redis.call('HGETALL', buckets[b])
  local marks = {}
  for j = 1, #all, 2 do
    local n = tonumber(all[j])
    if n then
      marks[n] = all[j + 1]
    end
  end
  local s, u = slots[b], users[b]
  local idle = {}
  for j = 1, #s do
    if math.max(tonumber(marks[s[j]] or '0'), start_s) < cutoff then
      idle[#idle + 1] = string.format('%d', s[j])
      gone[#gone + 1] = u[j]
    end
  end
  if #idle > 0 then
    redis.call('HDEL', buckets[b], unpack(idle))
  end
end
for from = 1, #gone, 1000 do
  redis.call('ZREM', KEYS[1], unpack(gone, from, math.min(from + 999, #gone)))
end
local dropped = #gone
redis.call('HSET', KEYS[3], 'scan_rank', cursor + #window / 2 - dropped)
if dropped > 0 then
  redis.call('HINCRBY', KEYS[3], 'idle_total', dropped)
end
return { #window / 2, dropped, waiting - dropped }
