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
-- Cost: the call reads every user's admission and place with one ZMSCORE each, numbers all
-- its new places with one INCRBY, adds them with one ZADD and marks them with one HSET per
-- bucket, so a new fan costs about no command of its own (a command from Lua costs about as
-- much as a join's own work); a fan who already waits costs one ZRANK.
--
-- Returns, per quadruple, five values: state (1 waiting, 2 admitted, 3 pre-queue), seq,
-- position (1 = next in; 0 when admitted or in the pre-queue), how (0 existing place, 1 new
-- place, 2 restored place), admission end ms (0 unless admitted); then the sale start (ms, 0
-- when none) and the epoch, last.
-- A line always has a sale start in its settings (0 = none; written when the concert is
-- created). If it has none at all, the store lost its data (or the line predates sale
-- openings): nothing is done and the call answers { 'sale_start_unknown' }, so that the gateway
-- puts the database's settings back (the sale start last) and calls again. Otherwise a store
-- that lost its data before a sale's start would number new places as if the sale had started,
-- and a paused or capped line would admit at the defaults.
local start_text = redis.call('HGET', KEYS[9], 'sale_start_ms')
if not start_text then
  return { 'sale_start_unknown' }
end

local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Numbers handed to Redis as numbers are formatted with "%.17g" (glibc's exact, slow double
-- formatting); every per-place number this script writes is therefore text it makes with
-- '%d' (integer formatting: our numbers are whole and below 2^53), or TIME's own text.
local now_text = t[1]

local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], now_s * 1000000 + tonumber(t[2]))
end
local start = tonumber(start_text)
local before_start = now < start

-- Reads `key`'s score of every user in one ZMSCORE per (at most) 1,000 users (unpack's stack
-- limit is a few thousand values).
local function scores_of(key, users)
  local all = {}
  for from = 1, #users, 1000 do
    local got = redis.call('ZMSCORE', key, unpack(users, from, math.min(from + 999, #users)))
    for j = 1, #got do
      all[from + j - 1] = got[j]
    end
  end
  return all
end

local users = {}
for i = 2, #ARGV, 4 do
  users[#users + 1] = ARGV[i]
end
local admitted = scores_of(KEYS[5], users)
local waiting = scores_of(KEYS[3], users)

-- First pass: what each item is, in call order. A user listed again in the same call gets the
-- first listing's place (`first`), as if the first had already run.
local first = {}
local state, seq, how, ends_out, fresh = {}, {}, {}, {}, {}
local restored_max = 0
local counted = 0
local joins, restored, expired = 0, 0, 0
for k = 1, #users do
  local user = users[k]
  local i = 2 + (k - 1) * 4
  state[k], seq[k], how[k], ends_out[k] = 1, 0, 0, 0
  if not first[user] then
    first[user] = k
    local ends = admitted[k]
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
      state[k] = 2
      seq[k] = tonumber(redis.call('HGET', KEYS[6], user))
      ends_out[k] = tonumber(ends)
    elseif waiting[k] then
      seq[k] = tonumber(waiting[k])
    else
      -- (most joins carry no kept token: "0", compared as text, needs no conversion)
      local token_seq = ARGV[i + 1] ~= '0' and tonumber(ARGV[i + 1]) or 0
      if token_seq > 0 and ARGV[i + 2] ~= epoch then
        seq[k] = token_seq
        how[k] = 2
        restored_max = math.max(restored_max, token_seq)
        restored = restored + 1
      elseif before_start then
        seq[k] = tonumber(ARGV[i + 3])
        how[k] = 1
      else
        -- numbered below, after every restored place has moved the counter past itself, so
        -- a numbered place is behind every other place in the line
        counted = counted + 1
        fresh[counted] = k
        how[k] = 1
      end
      joins = joins + 1
    end
  end
end

if restored_max > 0 and tonumber(redis.call('GET', KEYS[1])) < restored_max then
  redis.call('SET', KEYS[1], restored_max)
end
if counted > 0 then
  local last = redis.call('INCRBY', KEYS[1], counted)
  for j = 1, counted do
    seq[fresh[j]] = last - counted + j
  end
end

-- Add the new places (one ZADD per 500) and mark every place seen now (one HSET per bucket).
-- Numbered places are consecutive, so they share buckets: a bucket's name is made once per
-- run of places in it, not once per place.
local adds = {}
local marks = {}
local buckets = {}
local last_number, fields = nil, nil
for k = 1, #users do
  if first[users[k]] == k and state[k] == 1 then
    if how[k] ~= 0 then
      adds[#adds + 1] = string.format('%d', seq[k])
      adds[#adds + 1] = users[k]
    end
    local number = math.floor(seq[k] / 128)
    if number ~= last_number then
      local bucket = KEYS[4] .. string.format('%d', number)
      fields = marks[bucket]
      if not fields then
        fields = {}
        marks[bucket] = fields
        buckets[#buckets + 1] = bucket
      end
      last_number = number
    end
    fields[#fields + 1] = string.format('%d', seq[k] % 128)
    fields[#fields + 1] = now_text
  end
end
for from = 1, #adds, 1000 do
  redis.call('ZADD', KEYS[3], unpack(adds, from, math.min(from + 999, #adds)))
end
for _, bucket in ipairs(buckets) do
  local fields = marks[bucket]
  for from = 1, #fields, 1000 do
    redis.call('HSET', bucket, unpack(fields, from, math.min(from + 999, #fields)))
  end
end

-- Positions, now that every place of the call is in the line. The numbered places are its
-- last `counted` entries, in numbering order.
local card = 0
if counted > 0 then
  card = redis.call('ZCARD', KEYS[3])
end
local position = {}
for j = 1, counted do
  position[fresh[j]] = card - counted + j
end
local out = {}
for k = 1, #users do
  local f = first[users[k]]
  local st = state[f]
  if st == 1 then
    if before_start then
      st = 3
    elseif not position[f] then
      -- (a user listed again reuses the first listing's position)
      position[f] = redis.call('ZRANK', KEYS[3], users[f]) + 1
    end
  end
  out[#out + 1] = st
  out[#out + 1] = seq[f]
  out[#out + 1] = position[f] or 0
  out[#out + 1] = (f == k) and how[k] or 0
  out[#out + 1] = ends_out[f]
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
