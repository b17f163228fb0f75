-- Every run of a migration a runner took up (a start, a resume, a rollback): who asked, from which operation,
-- when it began and ended and the status it ended in. The migration's page shows them as its history.

CREATE TABLE async_migration_attempt (
    id              bigserial   PRIMARY KEY,
    migration_name  text        NOT NULL REFERENCES async_migration (name) ON DELETE CASCADE,
    runner_id       text        NOT NULL,
    -- The request the runner took up: 'start', 'resume' or 'rollback'.
    action          text        NOT NULL,
    requested_by    text        NOT NULL DEFAULT '',
    parameters      jsonb,
    from_operation  integer     NOT NULL CHECK (from_operation >= 0),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- The status the run ended in, and the operation it was at then.
    outcome         text,
    at_operation    integer     CHECK (at_operation >= 0)
);

CREATE INDEX async_migration_attempt_by_migration ON async_migration_attempt (migration_name, started_at);

-- What the copies of this instance's ClickHouse achieved: each partition copied by `INSERT … SELECT`, its bytes
-- on disk, rows and how long the statement took. A plan estimates a copy's duration from the newest of them.

CREATE TABLE clickhouse_copy_sample (
    id              bigserial        PRIMARY KEY,
    migration_name  text             NOT NULL,
    rows            bigint           NOT NULL CHECK (rows >= 0),
    bytes           bigint           NOT NULL CHECK (bytes >= 0),
    seconds         double precision NOT NULL CHECK (seconds >= 0),
    measured_at     timestamptz      NOT NULL DEFAULT now()
);

-- The partitions an operation works through (a table's copy, partitions moved), each with its size and when it
-- was done: the migration's page shows them as the operation's progress. `shard` is 0 off a cluster. Replaced
-- each time the operation starts on that shard; cleared when a run starts afresh or rolls back.

CREATE TABLE async_migration_partition (
    migration_name  text             NOT NULL REFERENCES async_migration (name) ON DELETE CASCADE,
    operation_index integer          NOT NULL CHECK (operation_index >= 0),
    shard           integer          NOT NULL CHECK (shard >= 0),
    partition_id    text             NOT NULL,
    rows            bigint           NOT NULL CHECK (rows >= 0),
    bytes           bigint           NOT NULL CHECK (bytes >= 0),
    done_at         timestamptz,
    seconds         double precision CHECK (seconds >= 0),
    PRIMARY KEY (migration_name, operation_index, shard, partition_id)
);
