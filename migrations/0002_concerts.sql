-- Concerts, their dates (schedules) and the 50 seats of every date.
CREATE TABLE concerts (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(200)    NOT NULL,
    created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE schedules (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    concert_id  BIGINT UNSIGNED NOT NULL,
    starts_at   DATETIME(6)     NOT NULL,
    price       BIGINT          NOT NULL,
    CONSTRAINT schedules_concert_fk FOREIGN KEY (concert_id) REFERENCES concerts (id),
    CONSTRAINT schedules_price_non_negative CHECK (price >= 0),
    KEY schedules_by_concert (concert_id, starts_at)
) ENGINE = InnoDB;

CREATE TABLE seats (
    schedule_id BIGINT UNSIGNED  NOT NULL,
    seat_no     TINYINT UNSIGNED NOT NULL,
    price       BIGINT           NOT NULL,
    PRIMARY KEY (schedule_id, seat_no),
    CONSTRAINT seats_schedule_fk FOREIGN KEY (schedule_id) REFERENCES schedules (id),
    CONSTRAINT seats_seat_no_range CHECK (seat_no BETWEEN 1 AND 50),
    CONSTRAINT seats_price_non_negative CHECK (price >= 0)
) ENGINE = InnoDB;
