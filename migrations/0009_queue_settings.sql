-- A concert's admission settings as an operator last set them (PUT /v1/admin/concerts/{id}/queue);
-- NULL = the instance default. The queue store holds the live copy every tick reads; this one
-- puts it back if the store loses its data, so a line an operator slowed, capped or paused
-- never comes back at the defaults (in gateway mode, max_active is what the origin can take).
ALTER TABLE concerts
  ADD COLUMN admit_per_tick INT UNSIGNED NULL,
  ADD COLUMN tick_ms INT UNSIGNED NULL,
  ADD COLUMN max_active INT UNSIGNED NULL,
  ADD COLUMN access_ttl_secs INT UNSIGNED NULL;
