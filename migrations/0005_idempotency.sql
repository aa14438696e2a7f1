-- Idempotency records: one stored result per (user, scope, key). The row is inserted inside the
-- same transaction as the work it guards, so a concurrent duplicate blocks on the unique key and
-- then sees either the committed result or, if the first attempt rolled back, nothing at all.
CREATE TABLE idempotency_keys (
    user_id       BIGINT UNSIGNED NOT NULL,
    scope         ENUM('charge', 'payment') NOT NULL,
    idem_key      VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_fingerprint VARCHAR(255) CHARACTER SET ascii NOT NULL,
    status_code   SMALLINT UNSIGNED NULL,
    response_body TEXT          NULL,
    created_at    DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (user_id, scope, idem_key),
    CONSTRAINT idempotency_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB;
