-- The latest attempt at each operation of each migration: when it began and ended, and how many rows it
-- copied when the operation counts them. Read by /metrics for operation durations and rows copied.

CREATE TABLE async_migration_operation (
    migration_name  text        NOT NULL REFERENCES async_migration (name) ON DELETE CASCADE,
    operation_index integer     NOT NULL CHECK (operation_index >= 0),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    rows_copied     bigint CHECK (rows_copied >= 0),
    PRIMARY KEY (migration_name, operation_index)
);
