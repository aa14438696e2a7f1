-- Runs once, on the first start of the MySQL replica (mounted into /docker-entrypoint-initdb.d).
-- docker-compose.yml starts the replica only after the primary is healthy (its TCP port
-- answers, which happens only after the primary's own init scripts have finished).
--
-- GTID-based replication: with SOURCE_AUTO_POSITION=1 the replica sends its (empty) GTID set
-- and the primary streams every transaction it has, from the beginning of its binary log:
-- the queuegate database and users from primary-init.sql first, then the gateway's
-- migrations and all later writes. No binlog file/position bookkeeping is needed.
CHANGE REPLICATION SOURCE TO
    SOURCE_HOST = 'mysql-primary',
    SOURCE_PORT = 3306,
    SOURCE_USER = 'repl',
    SOURCE_PASSWORD = 'repl-password',
    SOURCE_AUTO_POSITION = 1,
    SOURCE_CONNECT_RETRY = 5,
    SOURCE_RETRY_COUNT = 1000,
    GET_SOURCE_PUBLIC_KEY = 1;

START REPLICA;

-- The replication settings live in InnoDB tables, so after the entrypoint restarts the server
-- (temporary init server -> real server) the replica threads start again by themselves.
