-- check_access: are these access grants still live, and if not, why? One call answers many
-- grants of one line (every access check of a line that arrives on an instance while a call is
-- in flight rides on the next call: booking requests and gateway-mode forwards).
--
-- KEYS[1] admitted  ZSET user -> admission end (ms, Redis clock)
-- KEYS[2] adm_seq   HASH user -> seq of the admission the grant belongs to
-- KEYS[3] ended     HASH user -> "seq:reason" of the user's last admission that ended
-- ARGV    pairs: user id, seq claimed by the access token
--
-- Returns one answer per pair: 1 when the user is admitted now, by the same admission (seq)
-- the token names, and the admission has not ended. Otherwise the reason as a string: 'paid',
-- 'left', 'expired', 'superseded' (the user holds a newer admission), or 'ended' (no record
-- left).
-- Read-only: revocation is removal from KEYS[1], so paying, leaving or expiring all revoke in
-- one place, and an old token can never ride on a later admission of the same user. A check
-- sent after a revocation was made sees it (a check is never answered from a call sent before
-- it was asked). The reason is looked up only on the refusal path, so a live check costs two
-- reads.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 2 do
  local user, seq = ARGV[i], ARGV[i + 1]
  local answer = 'ended'
  local current = redis.call('HGET', KEYS[2], user)
  if current == seq then
    local ends = redis.call('ZSCORE', KEYS[1], user)
    if ends and tonumber(ends) > now then
      answer = 1
    else
      answer = 'expired'
    end
  elseif current then
    answer = 'superseded'
  else
    local last = redis.call('HGET', KEYS[3], user)
    if last then
      local s, reason = string.match(last, '^(%d+):(%a+)$')
      if s == seq then
        answer = reason
      end
    end
  end
  out[(i + 1) / 2] = answer
end
return out
