-- The transactional outbox: every booking event is a row written in the same transaction as the
-- change it describes (a hold, a cancellation, an expiry, a payment, a wallet charge), so the
-- event exists exactly when the change committed. The relay (src/outbox/relay.rs) carries each
-- row to the Redis Stream `<prefix>:events` at least once, marks it relayed, and prunes it
-- after the retention period; the stream's dedup keys make "at least once" exactly once.
--
-- Per-reservation commit order: every transaction that writes an event about a reservation has
-- that reservation's row locked (inserted or updated) before it inserts the event, so a later
-- event of one reservation always gets a larger id than an earlier, committed one; relaying in
-- id order therefore publishes a reservation's events in commit order.
CREATE TABLE outbox (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- Published as `event_id`: unique and stable across relay retries (UUIDv7).
    event_id          CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_type        ENUM('reservation.held', 'reservation.cancelled', 'reservation.expired',
                           'payment.completed', 'wallet.charged') NOT NULL,
    user_id           BIGINT UNSIGNED NOT NULL,
    reservation_id    BIGINT UNSIGNED NULL,
    -- The public `data` object without `at` (the relay adds `at` from created_at).
    data              TEXT CHARACTER SET utf8mb4 NOT NULL,
    -- payment.completed only: the admission to revoke (concert, and the access token's seq).
    revoke_concert_id BIGINT UNSIGNED NULL,
    revoke_seq        BIGINT UNSIGNED NULL,
    created_at        DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    relayed_at        DATETIME(6) NULL,
    UNIQUE KEY outbox_event_id (event_id),
    -- NULL first, then the primary key: the unrelayed rows in id order, and the prune range.
    KEY outbox_by_relayed (relayed_at),
    KEY outbox_by_reservation (reservation_id),
    CONSTRAINT outbox_revoke_complete CHECK ((revoke_concert_id IS NULL) = (revoke_seq IS NULL))
) ENGINE = InnoDB;

-- The relay lease: one row, locked (SELECT … FOR UPDATE SKIP LOCKED) for the length of a relay
-- transaction. Whoever holds the lock is the only relay at work; a relay whose process dies
-- loses its connection and with it the lock, at once, so another instance takes over on its
-- next tick with no lease timeout to wait out.
-- `installed_at` is when this migration ran: rows older than that have no events, and the
-- checker (`queuegate check`) expects none for them.
CREATE TABLE outbox_relay_lease (
    id           TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    installed_at DATETIME(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT outbox_relay_lease_single CHECK (id = 1)
) ENGINE = InnoDB;

INSERT INTO outbox_relay_lease (id) VALUES (1);
