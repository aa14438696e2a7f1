-- join: take places in a concert's line, or get back the ones users have. One call carries
-- every join of the line that arrived on an instance while the previous call was in flight.
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
-- KEYS[9] settings  HASH per-concert settings (sale_start_ms)
-- ARGV[1] a fresh random epoch id, used only if the store has none yet
-- ARGV[2..] quadruples: user id, seq from the caller's queue token (or 0), epoch from it (or
--           ''), and a random number in 1..2^50 drawn by the gateway for this join
--
-- Invariants (per user, whatever else the call carries):
-- * one place per user per concert: a user who is waiting or admitted gets that same place
--   (same seq) back, never a second one — also when one call carries the same user twice;
-- * a queue token issued in another epoch means the store lost its data since: the token's
--   seq is restored (and the counter moved past it) instead of sending the user to the back;
-- * a token from this epoch whose place is gone (left, idle, paid, expired) gets a new place;
-- * numbering starts at the current time in microseconds, not at 1, so after a data loss the
--   newcomers still number after every place issued before it and restored places keep
--   their turn (this holds while the line gets fewer than one join per microsecond);
-- * places are numbered in the order the call lists them (the order they reached the instance);
-- * before the sale starts a new place is a pre-queue place: its number is the random draw
--   (below 2^50, so below every number given after the start, which count up from the time
--   in microseconds); the pre-queue's order is therefore uniformly random, fixed once per
--   user when the place is first taken (joining again or twice changes nothing), unknown to
--   clients (the gateway draws it from the OS's randomness and never tells a position before
--   the start), and ahead of everyone who joins after the start.
--
-- Returns, per quadruple, five values: state (1 waiting, 2 admitted, 3 pre-queue), seq,
-- position (1 = next in; 0 when admitted or in the pre-queue), how (0 existing place, 1 new
-- place, 2 restored place), admission end ms (0 unless admitted); then the sale start (ms, 0
-- when none) and the epoch, last.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)

local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], now_s * 1000000 + tonumber(t[2]))
end
local start = tonumber(redis.call('HGET', KEYS[9], 'sale_start_ms') or '0')
local before_start = now < start

local out = {}
local joins, restored, expired = 0, 0, 0
for i = 2, #ARGV, 4 do
  local user = ARGV[i]
  local state, seq, position, how, ends_out = 1, 0, 0, 0, 0
  local ends = redis.call('ZSCORE', KEYS[5], user)
  if ends and tonumber(ends) <= now then
    -- An admission that ran out: the place is over.
    redis.call('ZREM', KEYS[5], user)
    local old = redis.call('HGET', KEYS[6], user)
    if old then
      redis.call('HSET', KEYS[8], user, old .. ':expired')
      redis.call('EXPIRE', KEYS[8], 172800)
    end
    redis.call('HDEL', KEYS[6], user)
    expired = expired + 1
    ends = nil
  end
  if ends then
    state = 2
    seq = tonumber(redis.call('HGET', KEYS[6], user))
    ends_out = tonumber(ends)
  else
    local score = redis.call('ZSCORE', KEYS[3], user)
    if score then
      seq = tonumber(score)
    else
      local token_seq = tonumber(ARGV[i + 1])
      if token_seq > 0 and ARGV[i + 2] ~= epoch then
        seq = token_seq
        how = 2
        if tonumber(redis.call('GET', KEYS[1])) < seq then
          redis.call('SET', KEYS[1], seq)
        end
        restored = restored + 1
      elseif before_start then
        seq = tonumber(ARGV[i + 3])
        how = 1
      else
        seq = redis.call('INCR', KEYS[1])
        how = 1
      end
      redis.call('ZADD', KEYS[3], seq, user)
      joins = joins + 1
    end
    local bucket = KEYS[4] .. string.format('%.0f', math.floor(seq / 128))
    redis.call('HSET', bucket, string.format('%.0f', seq % 128), now_s)
    if before_start then
      state = 3
    else
      position = redis.call('ZRANK', KEYS[3], user) + 1
    end
  end
  out[#out + 1] = state
  out[#out + 1] = seq
  out[#out + 1] = position
  out[#out + 1] = how
  out[#out + 1] = ends_out
end
if joins > 0 then
  redis.call('HINCRBY', KEYS[7], 'joins_total', joins)
end
if restored > 0 then
  redis.call('HINCRBY', KEYS[7], 'restored_total', restored)
end
if expired > 0 then
  redis.call('HINCRBY', KEYS[7], 'expired_total', expired)
end
out[#out + 1] = start
out[#out + 1] = epoch
return out
