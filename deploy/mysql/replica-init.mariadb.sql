-- MariaDB variant of replica-init.sql, for scripts/stack.sh (which runs the stack natively on
-- Debian's MariaDB). The two cannot be one file: MySQL 8.4 removed CHANGE MASTER TO and has only
-- CHANGE REPLICATION SOURCE TO (with SOURCE_AUTO_POSITION, GET_SOURCE_PUBLIC_KEY), which MariaDB
-- does not parse; MariaDB's GTIDs are a different implementation and are selected with
-- MASTER_USE_GTID. Keep the host, user and password in step with replica-init.sql;
-- scripts/stack.sh replaces only the host and port below.
--
-- GTID-based replication, as in replica-init.sql: the replica's gtid_slave_pos is empty, so with
-- MASTER_USE_GTID = slave_pos the primary streams every transaction of its binary log from the
-- beginning: the queuegate database and users from primary-init.sql first, then the gateway's
-- migrations and all later writes. No binlog file/position bookkeeping is needed.
CHANGE MASTER TO
    MASTER_HOST = 'mysql-primary',
    MASTER_PORT = 3306,
    MASTER_USER = 'repl',
    MASTER_PASSWORD = 'repl-password',
    MASTER_USE_GTID = slave_pos,
    MASTER_CONNECT_RETRY = 5;

START REPLICA;

-- The replication settings are kept in the data directory (master.info, relay-log.info,
-- mysql.gtid_slave_pos), so after a restart the replica threads start again by themselves.
