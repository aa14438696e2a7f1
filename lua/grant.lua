-- grant: admit one named user at once, bypassing the line (operators and tests).
--
-- KEYS[1] admitted  ZSET user -> admission end (ms)
-- KEYS[2] adm_seq   HASH user -> admission seq
-- KEYS[3] seq       STRING arrival counter
-- KEYS[4] waiting   ZSET user -> seq
-- KEYS[5] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[6] stats     HASH concert figures
-- ARGV[1] user id
-- ARGV[2] access ttl (ms)
-- ARGV[3] the channel admission ends are announced on, ARGV[4] the user's notice (queue::ends):
--         announced when the grant replaces an admission the user held (its tunnels must
--         re-check, its remembered grants be forgotten); a first admission announces nothing
--
-- Takes a fresh arrival number, so the grant is a new admission distinct from any earlier one;
-- a waiting place of the user is given up. Counts towards `admitted_total` like a normal
-- admission; it may exceed max_active, which is why only operators and tests may call it.
-- Returns { seq, admission end ms }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[1]
if redis.call('EXISTS', KEYS[3]) == 0 then
  -- Same numbering origin as join.lua: microseconds at the first place.
  redis.call('SET', KEYS[3], tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local seq = redis.call('INCR', KEYS[3])
local ends = now + tonumber(ARGV[2])
local waiting = redis.call('ZSCORE', KEYS[4], user)
if waiting then
  local w = tonumber(waiting)
  redis.call('ZREM', KEYS[4], user)
  redis.call('HDEL', KEYS[5] .. string.format('%.0f', math.floor(w / 128)), string.format('%.0f', w % 128))
end
local replaced = redis.call('HGET', KEYS[2], user)
redis.call('ZADD', KEYS[1], ends, user)
redis.call('HSET', KEYS[2], user, seq)
redis.call('HINCRBY', KEYS[6], 'admitted_total', 1)
if replaced then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return { seq, ends }
