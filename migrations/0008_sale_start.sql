-- When a concert's sale opens: fans who come earlier wait in a pre-queue whose order is drawn
-- at random at the start. NULL = open from creation. The queue store holds the live copy
-- (the line's settings); this one serves listings.
ALTER TABLE concerts ADD COLUMN sale_starts_at DATETIME(6) NULL;
