-- Payments and the wallet ledger. One payment per reservation (unique), and every balance change
-- is a ledger row: a wallet's balance always equals the sum of its ledger amounts.
CREATE TABLE payments (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    reservation_id BIGINT UNSIGNED NOT NULL,
    user_id        BIGINT UNSIGNED NOT NULL,
    amount         BIGINT          NOT NULL,
    created_at     DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT payments_reservation_fk FOREIGN KEY (reservation_id) REFERENCES reservations (id),
    CONSTRAINT payments_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT payments_amount_non_negative CHECK (amount >= 0),
    UNIQUE KEY payments_one_per_reservation (reservation_id),
    KEY payments_by_time (created_at)
) ENGINE = InnoDB;

CREATE TABLE ledger (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT UNSIGNED NOT NULL,
    kind        ENUM('charge', 'payment') NOT NULL,
    amount      BIGINT          NOT NULL,
    payment_id  BIGINT UNSIGNED NULL,
    created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT ledger_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT ledger_payment_fk FOREIGN KEY (payment_id) REFERENCES payments (id),
    -- charges add money, payments take it away, and a payment row names its payment
    CONSTRAINT ledger_sign CHECK (
        (kind = 'charge' AND amount > 0 AND payment_id IS NULL)
        OR (kind = 'payment' AND amount <= 0 AND payment_id IS NOT NULL)
    ),
    UNIQUE KEY ledger_one_per_payment (payment_id),
    KEY ledger_by_user (user_id)
) ENGINE = InnoDB;
