-- revoke: end a user's admission (after payment) and take them out of the line.
--
-- KEYS[1] admitted  ZSET user -> admission end (ms)
-- KEYS[2] adm_seq   HASH user -> admission seq
-- KEYS[3] waiting   ZSET user -> seq
-- KEYS[4] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] ended     HASH user -> "seq:reason" of the last admission that ended
-- ARGV[1] user id
-- ARGV[2] seq of the place/admission to end, or '*' for whatever the user has
-- ARGV[3] why it ends ('paid'), remembered so a refused token can say so
-- ARGV[4] the channel admission ends are announced on, ARGV[5] this end's notice (queue::ends)
--
-- Invariant: only the named place is touched. A late retry of an old revocation finds a
-- different seq (the user queued again) and leaves the new place alone.
-- Idempotent: revoking twice is the same as once. Returns 1 if an admission was ended, and
-- only then announces it (in the same atomic step, so no end goes unannounced).
local user, seq = ARGV[1], ARGV[2]
local ended = 0
local current = redis.call('HGET', KEYS[2], user)
if current and (seq == '*' or current == seq) then
  ended = redis.call('ZREM', KEYS[1], user)
  redis.call('HDEL', KEYS[2], user)
  redis.call('HSET', KEYS[6], user, current .. ':' .. ARGV[3])
  redis.call('EXPIRE', KEYS[6], 172800)
  if ended == 1 then
    redis.call('HINCRBY', KEYS[5], 'revoked_total', 1)
    redis.call('PUBLISH', ARGV[4], ARGV[5])
  end
end
local waiting = redis.call('ZSCORE', KEYS[3], user)
if waiting and (seq == '*' or tonumber(waiting) == tonumber(seq)) then
  local w = tonumber(waiting)
  redis.call('ZREM', KEYS[3], user)
  redis.call('HDEL', KEYS[4] .. string.format('%.0f', math.floor(w / 128)), string.format('%.0f', w % 128))
end
return ended
