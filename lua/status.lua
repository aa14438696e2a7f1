-- status: where are these places now? One call answers many places of one line (every poll of
-- a concert that arrives on an instance while a call is in flight rides on the next call, and
-- the events pump asks for all of an instance's streams at once).
--
-- KEYS[1] waiting   ZSET user -> seq
-- KEYS[2] seen      key PREFIX of the last-seen buckets (see join.lua)
-- KEYS[3] admitted  ZSET user -> admission end (ms)
-- KEYS[4] adm_seq   HASH user -> admission seq
-- KEYS[5] stats     HASH concert figures
-- KEYS[6] settings  HASH per-concert settings (sale_start_ms)
-- ARGV[1] idle limit (s)
-- ARGV[2] how many of the pairs, from the first, are to be marked
-- ARGV[3..] pairs: user id, seq named by the queue token (in decimal, as Redis writes scores)
--
-- A place's seq is compared with its score as text, never converted: Redis hands a score to
-- Lua as the text "%.17g" makes of it, which for our seqs (whole numbers below 2^53) is the
-- plain decimal the gateway sends. Converting both to numbers cost two strtod calls per poll
-- (~10 % of the script's time per poll, scripts/lua-bench.py); Lua compares two of its
-- strings by pointer.
--
-- marked: check the user's last-seen time against the idle limit (an idle place is
-- removed and answers gone, as the tick would do) and record "seen now". Not marked: the caller
-- marked this place less than half the idle limit ago, so it cannot be idle yet and its mark is
-- fresh enough: no read, no write. Either way the answer is exact.
--
-- Invariants: a place answers only to the token that created it (same seq); the only writes
-- are the caller's own last-seen marks and the removal of the caller's own idle place. The
-- admitted set is consulted only for users no longer in the line. Every place's score comes
-- from one ZMSCORE for the whole call (a command from Lua costs about as much as a poll's
-- own work), so a waiting fan's poll is one command of its own: its ZRANK.
--
-- Before the sale starts (now < sale_start_ms) a waiting place is a pre-queue place: its
-- position is not told (the order is hidden until the start), it is never idle, and it needs
-- no mark. After the start the idle clock of a place starts at the later of its last mark and
-- the start, so pre-queue fans are not dropped as idle for having waited for the opening.
--
-- Returns the sale start (ms, 0 when none), then one integer per pair: position (> 0) while
-- waiting, -1 for a pre-queue place, -admission_end_ms (< -1) when admitted, 0 when gone.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = tonumber(redis.call('HGET', KEYS[6], 'sale_start_ms') or '0')
local before_start = now < start
local cutoff = now_s - tonumber(ARGV[1])
local start_s = math.floor(start / 1000)
-- One ZMSCORE per (at most) 1,000 places: unpack's stack limit is a few thousand values.
local marked = tonumber(ARGV[2])
local scores = {}
local users = {}
for i = 3, #ARGV, 2 do
  users[#users + 1] = ARGV[i]
end
for from = 1, #users, 1000 do
  local got = redis.call('ZMSCORE', KEYS[1], unpack(users, from, math.min(from + 999, #users)))
  for j = 1, #got do
    scores[from + j - 1] = got[j]
  end
end
local out = { start }
local n = 1
local idle = 0
for i = 3, #ARGV, 2 do
  local user, seq = ARGV[i], ARGV[i + 1]
  local mark = n <= marked
  local result = 0
  local score = scores[n]
  if score then
    if score ~= seq then
      result = 0
    elseif before_start then
      result = -1
    else
      local present = true
      if mark then
        seq = tonumber(seq)
        local bucket = KEYS[2] .. string.format('%d', math.floor(seq / 128))
        local field = string.format('%d', seq % 128)
        if math.max(tonumber(redis.call('HGET', bucket, field) or '0'), start_s) < cutoff then
          redis.call('ZREM', KEYS[1], user)
          redis.call('HDEL', bucket, field)
          idle = idle + 1
          present = false
        else
          redis.call('HSET', bucket, field, t[1])
        end
      end
      if present then
        result = redis.call('ZRANK', KEYS[1], user) + 1
      end
    end
  else
    local ends = redis.call('ZSCORE', KEYS[3], user)
    if ends and tonumber(ends) > now and redis.call('HGET', KEYS[4], user) == seq then
      result = -tonumber(ends)
    end
  end
  n = n + 1
  out[n] = result
end
if idle > 0 then
  redis.call('HINCRBY', KEYS[5], 'idle_total', idle)
end
return out
