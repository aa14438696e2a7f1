-- publish_event: append one booking event to the events stream, once per event id.
--
-- KEYS[1] stream     <prefix>:events                      STREAM of booking events
-- KEYS[2] dedup key  {<prefix>:events}:seen:<event_id>    STRING -> the entry id it got
-- ARGV[1] event_id   (UUIDv7 from the outbox row)
-- ARGV[2] type       (reservation.held, …, wallet.charged)
-- ARGV[3] data       (JSON)
-- ARGV[4] MAXLEN     (approximate trim, `MAXLEN ~`)
-- ARGV[5] seconds the dedup key lives (the outbox retention)
--
-- Invariant: an event id is appended at most once while its dedup key lives. The relay
-- marks an outbox row relayed right after publishing it, so only a relay retried after a
-- crash or a database failure calls twice for one id, well within that time. Check and
-- append are one atomic step: two relays racing on one event cannot both append.
--
-- Both keys are global to the deployment (one stream, not one per concert). They hash to one
-- Redis Cluster slot because the dedup key's hash tag is the stream's whole name (the stream
-- key has no braces, so its slot is that of its whole name). One slot for every event is safe:
-- the publish rate is bounded by bookings, far below what one node serves, and a single key is
-- what gives consumers a single order.
--
-- Returns {1, entry id} when appended now, {0, entry id} when it already was.
local seen = redis.call('GET', KEYS[2])
if seen then
  return {0, seen}
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
  'event_id', ARGV[1], 'type', ARGV[2], 'data', ARGV[3])
redis.call('SET', KEYS[2], id, 'EX', ARGV[5])
return {1, id}
