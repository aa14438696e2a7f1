-- unlock: release a Redlock on one master, but only if we still own it.
--
-- KEYS[1] lock key
-- ARGV[1] the random token written when the lock was taken
--
-- Compare-and-delete in one step: a lock that expired and was taken by someone else carries
-- their token and is left alone. Returns 1 if this call deleted the lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
