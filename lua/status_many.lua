-- status_many: the status of many places at once, for Server-Sent Event streams. One call per
-- concert per push interval replaces one call per open stream.
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- ARGV[1] user id, ARGV[2] seq, ARGV[3] user id, ARGV[4] seq, … (pairs)
--
-- An open stream counts as being seen, so streaming users are never removed as idle.
-- Returns { rate, p1, p2, … } with one entry per pair: position (>0) while waiting,
-- -admission_end_ms (<0) when admitted, 0 when the place is gone.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { redis.call('HGET', KEYS[5], 'rate') or '0' }
for i = 1, #ARGV, 2 do
  local user, seq = ARGV[i], tonumber(ARGV[i + 1])
  local result = 0
  local ends = redis.call('ZSCORE', KEYS[3], user)
  if ends then
    if tonumber(ends) > now and tonumber(redis.call('HGET', KEYS[4], user)) == seq then
      result = -tonumber(ends)
    end
  else
    local score = redis.call('ZSCORE', KEYS[1], user)
    if score and tonumber(score) == seq then
      local bucket = KEYS[2] .. string.format('%.0f', math.floor(seq / 128))
      redis.call('HSET', bucket, string.format('%.0f', seq % 128), t[1])
      result = redis.call('ZRANK', KEYS[1], user) + 1
    end
  end
  out[#out + 1] = result
end
return out
