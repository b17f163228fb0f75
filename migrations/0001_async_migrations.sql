-- The state of async migrations: one row per migration definition, its errors, who did what, the runner lease.

CREATE TABLE async_migration (
    name                    text PRIMARY KEY,
    description             text        NOT NULL,
    status                  text        NOT NULL DEFAULT 'not_started'
        CHECK (status IN ('not_started', 'starting', 'running', 'completed', 'errored', 'rolled_back', 'failed_at_startup')),
    progress                smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    current_operation_index integer     NOT NULL DEFAULT 0 CHECK (current_operation_index >= 0),
    current_query_id        text        NOT NULL DEFAULT '',
    runner_id               text,
    started_at              timestamptz,
    finished_at             timestamptz,
    min_version             text        NOT NULL,
    max_version             text        NOT NULL,
    parameters              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    checkpoint              jsonb,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE async_migration_error (
    id              bigserial PRIMARY KEY,
    migration_name  text        NOT NULL REFERENCES async_migration (name) ON DELETE CASCADE,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    operation_index integer,
    query_id        text,
    message         text        NOT NULL
);
CREATE INDEX async_migration_error_by_migration ON async_migration_error (migration_name, occurred_at);

CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    action         text        NOT NULL,
    migration_name text,
    parameters     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- One row while a runner owns a migration; a heartbeat older than the lease timeout means the runner died.
CREATE TABLE runner_lease (
    migration_name text PRIMARY KEY REFERENCES async_migration (name) ON DELETE CASCADE,
    runner_id      text        NOT NULL,
    acquired_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runtime_setting (
    key        text PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);
