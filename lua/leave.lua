-- leave: give up a place (waiting or admitted).
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] ended     HASH user -> "seq:reason" of the last admission that ended
-- ARGV[1] user id
-- ARGV[2] seq named by the queue token
-- ARGV[3] the channel admission ends are announced on, ARGV[4] this leave's notice (queue::ends)
--
-- Invariant: only the place the token names is freed (a newer place of the same user is not).
-- Leaving while admitted ends the admission, which revokes the access token at once.
-- Returns 1 if a place was freed (and then announces it: tunnels of an admission re-check at
-- once), 0 if it was already gone.
local user, seq = ARGV[1], tonumber(ARGV[2])
local freed = 0
local score = redis.call('ZSCORE', KEYS[1], user)
if score and tonumber(score) == seq then
  redis.call('ZREM', KEYS[1], user)
  redis.call('HDEL', KEYS[2] .. string.format('%.0f', math.floor(seq / 128)), string.format('%.0f', seq % 128))
  freed = 1
end
if tonumber(redis.call('HGET', KEYS[4], user) or '-1') == seq then
  redis.call('ZREM', KEYS[3], user)
  redis.call('HDEL', KEYS[4], user)
  redis.call('HSET', KEYS[6], user, ARGV[2] .. ':left')
  redis.call('EXPIRE', KEYS[6], 172800)
  freed = 1
end
if freed == 1 then
  redis.call('HINCRBY', KEYS[5], 'leaves_total', 1)
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return freed
