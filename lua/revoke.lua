-- revoke: end a user's admission (after payment) and take them out of the line.
--
-- KEYS[1] admitted  ZSET user -> admission end (ms)
-- KEYS[2] adm_seq   HASH user -> admission seq
-- KEYS[3] waiting   ZSET user -> seq
-- KEYS[4] seen      ZSET user -> last seen (ms)
-- KEYS[5] stats     HASH concert figures
-- ARGV[1] user id
-- ARGV[2] seq of the admission to end, or '*' for whatever admission the user has
--
-- Invariant: only the named admission is ended; a newer admission (other seq) is left alone,
-- so a late retry of an old revocation cannot kick a user out of a later turn.
-- Idempotent: revoking twice is the same as once. Returns 1 if an admission was ended.
local user, seq = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[2], user)
local ended = 0
if current and (seq == '*' or current == seq) then
  ended = redis.call('ZREM', KEYS[1], user)
  redis.call('HDEL', KEYS[2], user)
  if ended == 1 then
    redis.call('HINCRBY', KEYS[5], 'revoked_total', 1)
  end
end
if seq == '*' or current == seq or not current then
  redis.call('ZREM', KEYS[3], user)
  redis.call('ZREM', KEYS[4], user)
end
return ended
