-- Users and their pre-charged wallets.
-- The wallet balance can never go negative: the CHECK makes an application bug fail loudly
-- instead of creating money out of nothing.
CREATE TABLE users (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(100)    NOT NULL,
    created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE wallets (
    user_id     BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    balance     BIGINT          NOT NULL DEFAULT 0,
    updated_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT wallets_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT wallets_balance_non_negative CHECK (balance >= 0),
    CONSTRAINT wallets_balance_bounded CHECK (balance <= 1000000000000000)
) ENGINE = InnoDB;
