-- check_access: is this access grant still live, and if not, why?
--
-- KEYS[1] admitted  ZSET user -> admission end (ms, Redis clock)
-- KEYS[2] adm_seq   HASH user -> seq of the admission the grant belongs to
-- KEYS[3] ended     HASH user -> "seq:reason" of the user's last admission that ended
-- ARGV[1] user id
-- ARGV[2] seq claimed by the access token
--
-- Returns 1 when the user is admitted now, by the same admission (seq) the token names, and
-- the admission has not ended. Otherwise the reason as a string: 'paid', 'left', 'expired',
-- 'superseded' (the user holds a newer admission), or 'ended' (no record left).
-- Read-only: revocation is removal from KEYS[1], so paying, leaving or expiring all revoke in
-- one place, and an old token can never ride on a later admission of the same user. The
-- reason is looked up only on the refusal path, so a live check costs two reads.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, seq = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[2], user)
if current == seq then
  local ends = redis.call('ZSCORE', KEYS[1], user)
  if ends and tonumber(ends) > now then
    return 1
  end
  return 'expired'
end
if current then
  return 'superseded'
end
local last = redis.call('HGET', KEYS[3], user)
if last then
  local s, reason = string.match(last, '^(%d+):(%a+)$')
  if s == seq then
    return reason
  end
end
return 'ended'
