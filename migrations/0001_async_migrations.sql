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
    -- What an operation saved to continue from after a crash (e.g. the last partition copied).
    checkpoint              jsonb,
    -- Work waiting for a runner: 'run' (start or resume) or 'rollback'; cleared when the run ends.
    requested_action        text CHECK (requested_action IN ('run', 'rollback')),
    requested_by            text,
    rolling_back            boolean     NOT NULL DEFAULT false,
    -- Set by a stop request; the runner that owns the migration acts on it.
    stop_requested_by       text,
    stop_and_rollback       boolean     NOT NULL DEFAULT false,
    -- Why the runner is pausing between steps (health-based throttling), shown on the page.
    waiting_reason          text,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- At most one migration is starting or running on an instance at a time.
CREATE UNIQUE INDEX async_migration_one_active ON async_migration ((true)) WHERE status IN ('starting', 'running');

-- Every change to a migration is announced, so that pages and runners in any process see it at once.
CREATE FUNCTION notify_async_migration_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('amigo_migration_changed', NEW.name);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER async_migration_changed AFTER INSERT OR UPDATE ON async_migration
    FOR EACH ROW EXECUTE FUNCTION notify_async_migration_changed();

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
