-- On a ClickHouse cluster, where each shard is in the operation a migration runs shard by shard: the node
-- (one replica of the shard) its statements run on, its progress, its current query id and its checkpoint.
-- The rows belong to operation `operation_index`; the next operation that runs per shard replaces them.

CREATE TABLE async_migration_shard (
    migration_name   text        NOT NULL REFERENCES async_migration (name) ON DELETE CASCADE,
    shard            integer     NOT NULL CHECK (shard >= 1),
    operation_index  integer     NOT NULL CHECK (operation_index >= 0),
    -- host:port (the TCP address `system.clusters` lists) of the replica running the shard's statements.
    node             text        NOT NULL,
    progress         smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    current_query_id text        NOT NULL DEFAULT '',
    checkpoint       jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_name, shard)
);

-- A shard's change is a change to its migration: announced on the same channel.
CREATE FUNCTION notify_async_migration_shard_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('amigo_migration_changed', NEW.migration_name);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER async_migration_shard_changed AFTER INSERT OR UPDATE ON async_migration_shard
    FOR EACH ROW EXECUTE FUNCTION notify_async_migration_shard_changed();
