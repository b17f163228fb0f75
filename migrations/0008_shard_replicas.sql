-- On a cluster, what the other replicas of each shard said while the shard's work ran on its node: whether
-- each answered, its read-only tables, its replication lag and queue (a JSON array, newest reading).
ALTER TABLE async_migration_shard ADD COLUMN replicas jsonb NOT NULL DEFAULT '[]';
