-- Runs once, on the first start of the MySQL primary (mounted into /docker-entrypoint-initdb.d).
-- Everything here is written to the binary log with GTIDs, so the replica, which starts from an
-- empty GTID set with SOURCE_AUTO_POSITION=1, receives the same database and users.
--
-- Demo credentials. In production, create these users with secrets from your secret store
-- and change the matching URLs in docker-compose.yml / your orchestrator.

-- The application database (the gateway would also create it; this fixes its collation).
CREATE DATABASE IF NOT EXISTS queuegate CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- The application user. On the replica it exists too (replicated) and can only read there,
-- because the replica runs with read_only=ON.
CREATE USER IF NOT EXISTS 'queuegate'@'%' IDENTIFIED BY 'queuegate';
GRANT ALL PRIVILEGES ON queuegate.* TO 'queuegate'@'%';
-- The gateway reads SHOW REPLICA STATUS on the replica (replica lag and health metrics), which
-- needs REPLICATION CLIENT on MySQL and SLAVE MONITOR on MariaDB >= 10.5.9 (where REPLICATION
-- CLIENT no longer covers it). The /*M! ... */ part is executed by MariaDB only; MySQL reads it
-- as a comment. Neither privilege reads or changes data.
GRANT REPLICATION CLIENT /*M!100509 , SLAVE MONITOR */ ON *.* TO 'queuegate'@'%';

-- The replication user the replica connects with (caching_sha2_password; the replica asks
-- for the source's RSA public key, see replica-init.sql).
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl-password';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
