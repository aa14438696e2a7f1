-- check_access: is this access grant still live?
--
-- KEYS[1] admitted  ZSET user -> admission end (ms, Redis clock)
-- KEYS[2] adm_seq   HASH user -> seq of the admission the grant belongs to
-- ARGV[1] user id
-- ARGV[2] seq claimed by the access token
--
-- Returns 1 when the user is admitted now, by the same admission (seq) the token names, and
-- the admission has not ended; 0 otherwise. Read-only: revocation is removal from KEYS[1], so
-- paying, leaving or expiring all revoke in one place, and an old token can never ride on a
-- later admission of the same user (different seq).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not ends or tonumber(ends) <= now then
  return 0
end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
return 1
