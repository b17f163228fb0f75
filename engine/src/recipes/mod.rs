//! Recipes: the generic operations a migration is made of (a mutation, a table rewritten, partitions moved,
//! Postgres rows updated in batches), usable by any product's migrations, in Rust or from a file.

pub mod move_partitions;
pub mod mutation;
pub mod partition_copy;
pub mod postgres_batches;
pub mod rewrite_table;
