//! What the connected ClickHouse can do, decided once at connect time from its version, the settings it
//! knows and the engine of the product's database. Every difference between ClickHouse releases that amigo
//! relies on is named here; migrations and recipes ask these questions instead of comparing versions.

use crate::version::Version;

/// Settings whose presence on the server is a capability (read from `system.settings` at connect time).
pub const PROBED_SETTINGS: &[&str] = &[ALLOW_NONDETERMINISTIC_MUTATIONS, INSERT_DEDUPLICATION_TOKEN];

/// Lets a replicated table's mutation call `joinGet` and other non-deterministic functions (refused without
/// it since 23.5, ClickHouse PR #49843).
pub const ALLOW_NONDETERMINISTIC_MUTATIONS: &str = "allow_nondeterministic_mutations";
/// Per-insert deduplication token (22.x).
pub const INSERT_DEDUPLICATION_TOKEN: &str = "insert_deduplication_token";

/// The engine of a ClickHouse database, as `system.databases.engine` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseEngine {
    /// The only engine before 20.5; tables are renamed under a lock that waits for queries in flight.
    Ordinary,
    /// The default since 20.10: tables have UUIDs, `RENAME` does not wait, `DROP` is delayed unless `SYNC`.
    Atomic,
    /// A database replicated through ZooKeeper (21.x): `Atomic`'s behaviour on every replica.
    Replicated,
    /// Any other engine (`Lazy`, `Memory`, `Overlay` …), named as the server names it.
    Other(String),
}

impl DatabaseEngine {
    pub fn from_name(name: &str) -> DatabaseEngine {
        match name {
            "Ordinary" => DatabaseEngine::Ordinary,
            "Atomic" => DatabaseEngine::Atomic,
            "Replicated" => DatabaseEngine::Replicated,
            other => DatabaseEngine::Other(other.to_string()),
        }
    }

    /// True for the engines whose tables have UUIDs and whose renames and drops do not wait for queries.
    fn is_atomic(&self) -> bool {
        matches!(self, DatabaseEngine::Atomic | DatabaseEngine::Replicated)
    }

    pub fn name(&self) -> &str {
        match self {
            DatabaseEngine::Ordinary => "Ordinary",
            DatabaseEngine::Atomic => "Atomic",
            DatabaseEngine::Replicated => "Replicated",
            DatabaseEngine::Other(name) => name,
        }
    }
}

/// What the server and the product's database support, and how amigo therefore talks to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub version: Version,
    pub database_engine: DatabaseEngine,
    /// Settings of [`PROBED_SETTINGS`] the server knows.
    known_settings: Vec<String>,
}

impl Capabilities {
    pub fn new(version: Version, database_engine: DatabaseEngine, known_settings: Vec<String>) -> Capabilities {
        Capabilities { version, database_engine, known_settings }
    }

    fn knows_setting(&self, name: &str) -> bool {
        self.known_settings.iter().any(|known| known == name)
    }

    /// Typed reads in `RowBinaryWithNamesAndTypes`, which lets the `clickhouse` crate check every column's name
    /// and type against the Rust type it is read into. Old servers (18.16) do not speak it.
    pub fn validates_rows(&self) -> bool {
        self.version.at_least(24, 1)
    }

    /// `EXCHANGE TABLES a AND b`: both names swapped atomically (Atomic and Replicated databases only).
    pub fn exchanges_tables(&self) -> bool {
        self.database_engine.is_atomic()
    }

    /// `RENAME TABLE` waits for the queries in flight on the table (Ordinary): an insert already running
    /// finishes before the rename, never into the table renamed away.
    pub fn rename_waits_for_inserts(&self) -> bool {
        self.database_engine == DatabaseEngine::Ordinary
    }

    /// What follows `DROP TABLE … ` so that the table and its ZooKeeper path are gone when the statement
    /// returns: `SYNC` in Atomic databases (whose drops are otherwise delayed by
    /// `database_atomic_delay_before_drop_table_sec`, 8 minutes by default), nothing where drops are immediate.
    pub fn drop_table_suffix(&self) -> &'static str {
        if self.database_engine.is_atomic() {
            " SYNC"
        } else {
            ""
        }
    }

    /// The ZooKeeper path of a replicated table named `table` in `database`, sharded (`{shard}`) or one copy on
    /// every node (`all`). In Atomic databases the path carries the table's `{uuid}` (the same on every replica
    /// of a table made `ON CLUSTER`), so a table made again after a drop never meets the old path; before, the
    /// database and table names.
    pub fn replicated_table_path(&self, database: &str, table: &str, per_shard: bool) -> String {
        let group = if per_shard { "{shard}" } else { "all" };
        if self.database_engine.is_atomic() {
            format!("/clickhouse/tables/{{uuid}}/{group}")
        } else {
            format!("/clickhouse/tables/{group}/{database}/{table}")
        }
    }

    /// `system.disks`, with free and total space (19.15).
    pub fn reports_disks(&self) -> bool {
        self.version.at_least(19, 15)
    }

    /// `EXPLAIN AST` of any statement, which parses it without running it (21.1, ClickHouse PR #18136; of a
    /// `SELECT` only since 20.6): what `amigo migrations check --servers` asks.
    pub fn explains_syntax(&self) -> bool {
        self.version.at_least(21, 1)
    }

    /// `KILL MUTATION`, and `system.mutations.latest_fail_reason` (both 19.3).
    pub fn kills_mutations(&self) -> bool {
        self.version.at_least(19, 3)
    }

    /// `ALTER TABLE … MOVE PARTITION … TO TABLE` (20.2): one atomic statement.
    pub fn moves_partitions_to_tables(&self) -> bool {
        self.version.at_least(20, 2)
    }

    /// `DateTime64` (20.1).
    pub fn has_datetime64(&self) -> bool {
        self.version.at_least(20, 1)
    }

    /// A mutation resolves `joinGet`'s database-qualified table name (20.8); before, it resolves it in the
    /// server's default database only (18.16 tested, 19.17 in ClickHouse issue #12012).
    pub fn qualified_join_get_in_mutations(&self) -> bool {
        self.version.at_least(20, 8)
    }

    /// The settings a mutation that calls `joinGet` needs: on servers that know it,
    /// [`ALLOW_NONDETERMINISTIC_MUTATIONS`] (required on replicated tables since 23.5, harmless elsewhere).
    pub fn join_get_mutation_settings(&self) -> Vec<(String, String)> {
        if self.knows_setting(ALLOW_NONDETERMINISTIC_MUTATIONS) {
            vec![(ALLOW_NONDETERMINISTIC_MUTATIONS.to_string(), "1".to_string())]
        } else {
            Vec::new()
        }
    }

    /// `insert_deduplication_token` (22.x): a retried insert with the same token is written once.
    pub fn deduplicates_inserts_by_token(&self) -> bool {
        self.knows_setting(INSERT_DEDUPLICATION_TOKEN)
    }

    /// `system.processes.query_kind` (22.1): inserts in flight can be told by kind rather than by their text.
    pub fn reports_query_kind(&self) -> bool {
        self.version.at_least(22, 1)
    }

    /// `WHERE _partition_id = '…'` reads only that partition (21.5, ClickHouse PR #21401); before, the server
    /// reads every part and filters rows (measured on 18.16), and only a condition on the partition key's
    /// columns prunes partitions.
    pub fn prunes_by_partition_id(&self) -> bool {
        self.version.at_least(21, 5)
    }

    /// `TTL` on tables and columns (19.6).
    pub fn table_ttl(&self) -> bool {
        self.version.at_least(19, 6)
    }

    /// Data skipping indexes (`INDEX … TYPE … GRANULARITY …`) without an experimental setting (20.1; 18.16 has
    /// none).
    pub fn skip_indexes(&self) -> bool {
        self.version.at_least(20, 1)
    }

    /// Projections (`PROJECTION … (SELECT …)`) without an experimental setting (22.2, ClickHouse PR #34456).
    pub fn projections(&self) -> bool {
        self.version.at_least(22, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: &str, engine: &str, settings: &[&str]) -> Capabilities {
        Capabilities::new(
            Version::parse(version).unwrap(),
            DatabaseEngine::from_name(engine),
            settings.iter().map(|name| name.to_string()).collect(),
        )
    }

    #[test]
    fn debian_18_16_gets_the_old_forms() {
        let old = server("18.16.1", "Ordinary", &[]);
        assert!(!old.validates_rows());
        assert!(!old.exchanges_tables());
        assert!(old.rename_waits_for_inserts());
        assert_eq!(old.drop_table_suffix(), "");
        assert_eq!(old.replicated_table_path("shop", "orders", true), "/clickhouse/tables/{shard}/shop/orders");
        assert!(!old.reports_disks());
        assert!(!old.kills_mutations());
        assert!(!old.moves_partitions_to_tables());
        assert!(!old.has_datetime64());
        assert!(!old.qualified_join_get_in_mutations());
        assert!(old.join_get_mutation_settings().is_empty());
        assert!(!old.deduplicates_inserts_by_token());
        assert!(!old.explains_syntax());
        assert!(!old.reports_query_kind());
        assert!(!old.prunes_by_partition_id());
        assert!(!old.table_ttl() && !old.skip_indexes() && !old.projections());
    }

    #[test]
    fn a_current_server_with_an_atomic_database_gets_the_new_forms() {
        let current = server("26.9.2.1", "Atomic", PROBED_SETTINGS);
        assert!(current.validates_rows());
        assert!(current.exchanges_tables());
        assert!(!current.rename_waits_for_inserts());
        assert_eq!(current.drop_table_suffix(), " SYNC");
        assert_eq!(current.replicated_table_path("shop", "orders", true), "/clickhouse/tables/{uuid}/{shard}");
        assert_eq!(current.replicated_table_path("shop", "orders", false), "/clickhouse/tables/{uuid}/all");
        assert!(current.reports_disks() && current.kills_mutations() && current.moves_partitions_to_tables());
        assert!(current.has_datetime64() && current.qualified_join_get_in_mutations());
        assert_eq!(current.join_get_mutation_settings(), [("allow_nondeterministic_mutations".to_string(), "1".to_string())]);
        assert!(current.deduplicates_inserts_by_token());
        assert!(current.explains_syntax() && current.reports_query_kind());
        assert!(current.prunes_by_partition_id());
        assert!(current.table_ttl() && current.skip_indexes() && current.projections());
    }

    #[test]
    fn an_ordinary_database_on_a_current_server_renames_like_an_old_one() {
        let ordinary = server("24.3.2", "Ordinary", PROBED_SETTINGS);
        assert!(ordinary.validates_rows());
        assert!(!ordinary.exchanges_tables());
        assert!(ordinary.rename_waits_for_inserts());
        assert_eq!(ordinary.drop_table_suffix(), "");
    }

    #[test]
    fn the_settings_a_server_lacks_are_never_sent() {
        let without = server("23.8", "Atomic", &[INSERT_DEDUPLICATION_TOKEN]);
        assert!(without.join_get_mutation_settings().is_empty());
        assert!(without.deduplicates_inserts_by_token());
    }
}
