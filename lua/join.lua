-- join: take a place in a concert's line, or get back the one you have.
--
-- KEYS[1] seq       STRING arrival counter
-- KEYS[2] epoch     STRING id of this store's lifetime
-- KEYS[3] waiting   ZSET user -> seq
-- KEYS[4] seen      key PREFIX of the last-seen buckets: HASH <prefix><floor(seq/128)>,
--                   field seq % 128 -> last seen (s). Small hashes stay listpack-encoded, so a
--                   waiting user costs ~10 bytes here instead of a second sorted-set entry.
--                   (Every bucket shares the concert's hash tag, hence its Cluster slot.)
-- KEYS[5] admitted  ZSET user -> admission end (ms)
-- KEYS[6] adm_seq   HASH user -> admission seq
-- KEYS[7] stats     HASH concert figures
-- KEYS[8] ended     HASH user -> "seq:reason" of the last admission that ended
-- ARGV[1] user id
-- ARGV[2] a fresh random epoch id, used only if the store has none yet
-- ARGV[3] seq from the caller's queue token, or 0
-- ARGV[4] epoch from the caller's queue token, or ''
--
-- Invariants:
-- * one place per user per concert: a user who is waiting or admitted gets that same place
--   (same seq) back, never a second one;
-- * a queue token issued in another epoch means the store lost its data since: the token's
--   seq is restored (and the counter moved past it) instead of sending the user to the back;
-- * a token from this epoch whose place is gone (left, idle, paid, expired) gets a new place;
-- * numbering starts at the current time in microseconds, not at 1, so after a data loss the
--   newcomers still number after every place issued before it and restored places keep
--   their turn (this holds while the line gets fewer than one join per microsecond).
--
-- Returns { state, seq, position, epoch, how, admission_end_ms }
--   state: 'waiting' | 'admitted'; position: 1 = next in (0 when admitted)
--   how: 0 existing place, 1 new place, 2 restored place
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[1]

local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
end

local ends = redis.call('ZSCORE', KEYS[5], user)
if ends then
  if tonumber(ends) > now then
    return { 'admitted', tonumber(redis.call('HGET', KEYS[6], user)), 0, epoch, 0, tonumber(ends) }
  end
  -- An admission that ran out: the place is over.
  redis.call('ZREM', KEYS[5], user)
  local old = redis.call('HGET', KEYS[6], user)
  if old then
    redis.call('HSET', KEYS[8], user, old .. ':expired')
    redis.call('EXPIRE', KEYS[8], 172800)
  end
  redis.call('HDEL', KEYS[6], user)
  redis.call('HINCRBY', KEYS[7], 'expired_total', 1)
end

local seq = redis.call('ZSCORE', KEYS[3], user)
local how = 0
if seq then
  seq = tonumber(seq)
else
  local token_seq = tonumber(ARGV[3])
  if token_seq > 0 and ARGV[4] ~= epoch then
    seq = token_seq
    how = 2
    local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
    if counter < seq then
      redis.call('SET', KEYS[1], seq)
    end
    redis.call('HINCRBY', KEYS[7], 'restored_total', 1)
  else
    if redis.call('EXISTS', KEYS[1]) == 0 then
      redis.call('SET', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]))
    end
    seq = redis.call('INCR', KEYS[1])
    how = 1
  end
  redis.call('ZADD', KEYS[3], seq, user)
  redis.call('HINCRBY', KEYS[7], 'joins_total', 1)
end
local bucket = KEYS[4] .. string.format('%.0f', math.floor(seq / 128))
redis.call('HSET', bucket, string.format('%.0f', seq % 128), t[1])
local rank = redis.call('ZRANK', KEYS[3], user)
return { 'waiting', seq, rank + 1, epoch, how, 0 }
