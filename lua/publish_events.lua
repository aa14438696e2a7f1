-- publish_events: append booking events to the events stream, in order, once per event id.
--
-- KEYS[1]    stream      <prefix>:events                      STREAM of booking events
-- KEYS[1+i]  dedup key   {<prefix>:events}:seen:<event_id i>  STRING -> the entry id it got
-- ARGV[1]    MAXLEN (approximate trim, `MAXLEN ~`)
-- ARGV[2]    seconds a dedup key lives (the outbox retention)
-- ARGV[3i], ARGV[3i+1], ARGV[3i+2]   event i: event_id (UUIDv7), type, data (JSON)
--
-- Invariant: an event id is appended at most once while its dedup key lives. The relay marks
-- outbox rows relayed right after publishing them, so only a relay retried after a crash or a
-- database failure publishes an id twice, well within that time; check and append are one
-- atomic step per event, so even two relays racing on one event cannot both append it.
-- Events are appended in the order given (the outbox's id order). If the script stops half
-- way (Redis out of memory), the ones appended stay and are recognised on the retry.
--
-- Keys: the stream and every dedup key are global to the deployment (one feed, not one per
-- concert). They hash to one Redis Cluster slot because each dedup key's hash tag is the
-- stream's whole name (the stream key has no braces, so its slot is that of its whole name).
-- One slot for every event is safe: the publish rate is bounded by bookings, far below what
-- one node serves, and a single key is what gives consumers a single order.
--
-- Returns one integer per event: 1 appended now, 0 already appended earlier.
local maxlen, ttl = ARGV[1], ARGV[2]
local out = {}
for i = 2, #KEYS do
  local a = 3 * (i - 1)
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 0
  else
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      'event_id', ARGV[a], 'type', ARGV[a + 1], 'data', ARGV[a + 2])
    redis.call('SET', KEYS[i], id, 'EX', ttl)
    out[#out + 1] = 1
  end
end
return out
