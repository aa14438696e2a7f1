-- status: where is this place now? Also marks the user as still here.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- ARGV[1] user id
-- ARGV[2] seq named by the queue token
-- ARGV[3] idle limit (s)
--
-- Invariants: read-mostly; the only writes are the user's own last-seen time, and removing
-- the user's own place when it has been idle past the limit (the tick would remove it anyway).
-- A place answers only to the token that created it (same seq).
--
-- Returns one of
--   { 'admitted', admission_end_ms }
--   { 'waiting', position }
-- (The line's pace for the ETA comes from each instance's tick results, not from here: the
-- hottest script stays as short as possible.)
--   { 'gone' }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, seq, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

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
local bucket = KEYS[2] .. string.format('%.0f', math.floor(seq / 128))
local field = string.format('%.0f', seq % 128)
local last = tonumber(redis.call('HGET', bucket, field) or '0')
if last < tonumber(t[1]) - idle then
  redis.call('ZREM', KEYS[1], user)
  redis.call('HDEL', bucket, field)
  redis.call('HINCRBY', KEYS[5], 'idle_total', 1)
  return { 'gone' }
end
redis.call('HSET', bucket, field, t[1])
local rank = redis.call('ZRANK', KEYS[1], user)
return { 'waiting', rank + 1 }
