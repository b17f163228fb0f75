//! The mutation recipe: one `ALTER TABLE … UPDATE/DELETE` that the server runs in the background, part by
//! part, on every shard; its progress read from `system.mutations`, its id saved as the checkpoint, adopted
//! rather than issued again on resume, and killed on stop where the server can.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::clickhouse::{ClickHouse, MutationStatus, QueryOptions};
use crate::context::MigrationContext;
use crate::definition::Operation;
use crate::preview::{clickhouse_footprint, partition_sizes, DurationKind, OperationPreview};
use crate::{Error, Result};

/// How long an issued mutation may take to appear in `system.mutations` (a replicated table's replica lists
/// it once it has read it back from ZooKeeper, a moment later).
const MUTATION_LISTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a rollback waiting for mutations to end looks again.
const END_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// One mutation of a table of the product's database.
#[derive(Clone)]
pub struct Mutation {
    /// The table mutated (on a cluster, the replicated table behind the `Distributed` one).
    pub table: String,
    /// What follows `ALTER TABLE table`: `UPDATE column = expression WHERE condition` or `DELETE WHERE
    /// condition`. The `WHERE` should leave out rows already done, so that issuing it again is harmless.
    pub command: String,
    /// A piece of the command as `system.mutations` lists it (the server reformats the statement): how this
    /// recipe tells its own mutations from others on the same table.
    pub marker: String,
    /// ClickHouse settings sent with the `ALTER`.
    pub settings: Vec<(String, String)>,
    /// Send the `ALTER` from a session in the server's default database rather than the product's: old servers
    /// (before 20.8) check the names in the mutation in the session's database when it is issued, and resolve
    /// them in the server's default database when it runs.
    pub from_server_default_database: bool,
}

impl Mutation {
    /// A mutation of `table` by `command`, found again by `marker`, with no settings.
    pub fn new(table: &str, command: &str, marker: &str) -> Mutation {
        Mutation {
            table: table.into(),
            command: command.into(),
            marker: marker.into(),
            settings: Vec::new(),
            from_server_default_database: false,
        }
    }

    /// The operation that runs this mutation: on stop or failure it is killed ([`Mutation::interrupt`]); its
    /// rollback ends it ([`Mutation::end`]) and undoes nothing else (what the mutation changed stays changed).
    pub fn operation(self, description: &str) -> Operation {
        let mutation = Arc::new(self);
        let (run, interrupt, end, preview) = (mutation.clone(), mutation.clone(), mutation.clone(), mutation);
        Operation::rust(
            description,
            move |context| {
                let mutation = run.clone();
                async move { mutation.run(&context).await }
            },
            move |context| {
                let mutation = end.clone();
                async move { mutation.end(&context).await }
            },
        )
        .on_interrupt(move |context| {
            let mutation = interrupt.clone();
            async move { mutation.interrupt(&context).await }
        })
        .with_preview(move |context| {
            let mutation = preview.clone();
            async move { mutation.preview(&context).await }
        })
    }

    /// What a plan shows: the `ALTER` as it would be sent, and the table it rewrites part by part (the disk
    /// needed is at most the table again, while rewritten parts wait to be removed).
    pub async fn preview(&self, context: &MigrationContext) -> Result<OperationPreview> {
        let footprint = clickhouse_footprint(&self.table, &partition_sizes(&context.clickhouse, &self.table).await?);
        let mut note =
            "the server rewrites every part the condition touches in the background; progress is read from system.mutations".to_string();
        if context.cluster.is_some() {
            note.push_str("; issued on every shard (the figures are this node's shard)");
        }
        Ok(OperationPreview {
            statements: vec![self.sql(&context.clickhouse)],
            note,
            disk_needed: footprint.bytes,
            tables: vec![footprint],
            duration: DurationKind::Unknown,
            ..OperationPreview::default()
        })
    }

    /// The `ALTER TABLE` statement.
    fn sql(&self, clickhouse: &ClickHouse) -> String {
        format!("ALTER TABLE {} {}", clickhouse.qualified(&self.table), self.command)
    }

    /// Runs the mutation on every shard and waits until it has rewritten every part: adopts one of its own still
    /// pending (issued before a crash, a shutdown or a stop the server could not act on), or one the checkpoint
    /// names as done, before issuing it again.
    pub async fn run(&self, context: &MigrationContext) -> Result<()> {
        context.on_every_shard(|context| async move { self.run_on_shard(&context).await }).await
    }

    async fn run_on_shard(&self, context: &MigrationContext) -> Result<()> {
        let checkpoint = context.checkpoint();
        let saved_id = checkpoint.as_ref().and_then(|checkpoint| checkpoint["mutation_id"].as_str().map(str::to_string));
        let before = self.own_mutations(context).await?;
        let pending = before.iter().find(|mutation| mutation.is_done == 0).cloned();
        let mutation = match pending {
            Some(mutation) => mutation,
            None if before.iter().any(|mutation| Some(&mutation.mutation_id) == saved_id.as_ref() && mutation.is_done != 0) => {
                return context.report_progress(1.0).await;
            }
            None => self.issue(context, &before).await?,
        };
        let parts_total = match checkpoint {
            Some(checkpoint) if saved_id.as_deref() == Some(mutation.mutation_id.as_str()) => {
                checkpoint["parts_total"].as_i64().unwrap_or(mutation.parts_to_do)
            }
            _ => mutation.parts_to_do,
        };
        context.save_checkpoint(json!({ "mutation_id": mutation.mutation_id, "parts_total": parts_total })).await?;
        tracing::info!(table = %self.table, mutation_id = %mutation.mutation_id, parts_total, "waiting for the mutation");
        context.wait_for_mutation(&self.table, &mutation.mutation_id, parts_total, 0.0..1.0).await
    }

    /// This recipe's mutations of the table, oldest first.
    async fn own_mutations(&self, context: &MigrationContext) -> Result<Vec<MutationStatus>> {
        let mutations = context.clickhouse.mutations(&self.table).await?;
        Ok(mutations.into_iter().filter(|mutation| mutation.command.contains(&self.marker)).collect())
    }

    /// Issues the mutation and finds its id: the one of ours that `before` did not list.
    async fn issue(&self, context: &MigrationContext, before: &[MutationStatus]) -> Result<MutationStatus> {
        let sql = self.sql(&context.clickhouse);
        if self.from_server_default_database {
            // On the node of this shard: `context` is the shard's inside `on_every_shard`.
            context.clickhouse.server_default_database_client().query_raw(&sql).execute().await?;
        } else {
            let options = QueryOptions { settings: self.settings.clone(), timeout: None };
            context.clickhouse_execute_part(&sql, &options, 0.0..0.0).await?;
        }
        let deadline = tokio::time::Instant::now() + MUTATION_LISTED_WITHIN;
        loop {
            let issued = self
                .own_mutations(context)
                .await?
                .into_iter()
                .find(|mutation| !before.iter().any(|known| known.mutation_id == mutation.mutation_id));
            if let Some(mutation) = issued {
                return Ok(mutation);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Migration(format!(
                    "the mutation of {} was issued but system.mutations does not list it after {} s",
                    self.table,
                    MUTATION_LISTED_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What a stop, a failure or a failed health check does to the mutation, on every shard: kills it where the
    /// server can (`KILL MUTATION`, 19.3), or says that it goes on. Parts already rewritten keep the change.
    pub async fn interrupt(&self, context: &MigrationContext) -> Result<Option<String>> {
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        context
            .on_every_shard(|context| {
                let notes = notes.clone();
                async move {
                    if let Some(note) = self.interrupt_on_shard(&context).await? {
                        let note = match context.cluster {
                            Some(_) => format!("shard {}: {note}", context.shard_number()),
                            None => note,
                        };
                        notes.lock().expect("notes lock").push(note);
                    }
                    Ok(())
                }
            })
            .await?;
        let notes = std::mem::take(&mut *notes.lock().expect("notes lock"));
        Ok(Some(notes.join("; ")).filter(|text| !text.is_empty()))
    }

    async fn interrupt_on_shard(&self, context: &MigrationContext) -> Result<Option<String>> {
        let pending: Vec<String> = self
            .own_mutations(context)
            .await?
            .into_iter()
            .filter(|mutation| mutation.is_done == 0)
            .map(|mutation| mutation.mutation_id)
            .collect();
        if pending.is_empty() {
            return Ok(None);
        }
        let ids = pending.join(", ");
        if !context.clickhouse.capabilities().kills_mutations() {
            return Ok(Some(format!(
                "ClickHouse {} cannot kill a mutation (KILL MUTATION came in 19.3), so mutation {ids} goes on until it has \
                 rewritten every part of {}; resume to wait for it, or roll back, which waits for it first",
                context.clickhouse.version(),
                self.table
            )));
        }
        for mutation_id in &pending {
            context.clickhouse.kill_mutation(&self.table, mutation_id).await?;
        }
        Ok(Some(format!("mutation {ids} was killed; the parts it rewrote keep the change, and a resume does the rest")))
    }

    /// Ends every pending mutation of this recipe, on every shard: kills them where the server can, then waits
    /// until none is left (on 18.16: until they finish). A rollback calls it before dropping what a pending
    /// mutation reads (it would fail on every part forever).
    pub async fn end(&self, context: &MigrationContext) -> Result<()> {
        context
            .on_every_shard(|context| async move {
                loop {
                    let pending: Vec<MutationStatus> =
                        self.own_mutations(&context).await?.into_iter().filter(|mutation| mutation.is_done == 0).collect();
                    if pending.is_empty() {
                        return Ok(());
                    }
                    if context.clickhouse.capabilities().kills_mutations() {
                        for mutation in &pending {
                            context.clickhouse.kill_mutation(&self.table, &mutation.mutation_id).await?;
                        }
                    }
                    tokio::time::sleep(END_POLL_INTERVAL).await;
                }
            })
            .await
    }
}
