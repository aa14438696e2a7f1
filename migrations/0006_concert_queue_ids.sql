-- Every concert's waiting line gets a random id, part of its Redis keys: queue state then
-- belongs to the concert it was made for, and a fresh database next to an old Redis (or two
-- environments sharing one) never adopts another's line or settings.
ALTER TABLE concerts ADD COLUMN queue_id BIGINT UNSIGNED NOT NULL DEFAULT 0;

UPDATE concerts SET queue_id = FLOOR(1 + RAND() * 9007199254740990) WHERE queue_id = 0;
