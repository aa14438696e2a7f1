-- Seat reservations (holds). The generated column `live_seat_no` is the seat number while the
-- reservation is live (held or confirmed) and NULL otherwise; the unique index over it means the
-- database itself refuses a second live reservation of one seat, whatever the application does.
-- An expired-but-unswept hold is still 'held' here: whoever takes the seat next first flips it to
-- 'expired' inside the same transaction.
CREATE TABLE reservations (
    id           BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id      BIGINT UNSIGNED  NOT NULL,
    schedule_id  BIGINT UNSIGNED  NOT NULL,
    seat_no      TINYINT UNSIGNED NOT NULL,
    price        BIGINT           NOT NULL,
    status       ENUM('held', 'confirmed', 'expired', 'cancelled') NOT NULL,
    expires_at   DATETIME(6)      NOT NULL,
    created_at   DATETIME(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   DATETIME(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    live_seat_no TINYINT UNSIGNED AS (IF(status IN ('held', 'confirmed'), seat_no, NULL)) PERSISTENT,
    CONSTRAINT reservations_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT reservations_seat_fk FOREIGN KEY (schedule_id, seat_no) REFERENCES seats (schedule_id, seat_no),
    CONSTRAINT reservations_price_non_negative CHECK (price >= 0),
    UNIQUE KEY reservations_one_live_per_seat (schedule_id, live_seat_no),
    KEY reservations_by_seat (schedule_id, seat_no, status),
    KEY reservations_by_user (user_id, schedule_id, status),
    KEY reservations_expiry_sweep (status, expires_at)
) ENGINE = InnoDB;
