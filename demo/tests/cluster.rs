//! Migrations on a real ClickHouse cluster (two shards of two replicas and a ZooKeeper, started by
//! `scripts/cluster` for each test): 0001_events_sort_key rebuilds `events_local` behind the `Distributed`
//! `events` on every shard, with per-shard progress, query ids and row counts, then 0002_backfill_person_id
//! fills `person_id` on every replica of every shard, and 0003 moves old months shard by shard (a failure on
//! one shard rolls back every shard); 0002 stopped mid-mutation on every shard, then resumed; a lagging
//! replica holds the run; the entry node killed mid-copy, the run resumes through another node;
//! stop-and-rollback restores every shard; a node killed or paused mid-copy leaves the migration errored, and
//! once it is back, resume finishes it; each shard resumes from its own checkpoint; too many parts on any node
//! fails the health check.
//!
//! ClickHouse 18.16 only: `scripts/cluster` runs Debian's server, the only one installable here; on a
//! current-release cluster, what differs is covered by the capability tests (docs/cluster.md says which).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use demo::migrations::events_sort_key::{self, NAME};
use demo::migrations::{backfill_person_id, move_old_partitions};
use demo::{events_partition_checksums, events_partition_checksums_on_every_node, seed, PartitionChecksum, SeedRequest};
use engine::clickhouse::QueryOptions;
use engine::context::MigrationContext;
use engine::definition::{nothing_to_undo, MigrationDefinition, Operation};
use engine::status::Status;
use engine::testing::{is_settled, spawn_runner, wait_for, PrivateCluster, ZOOKEEPER_SESSION_TIMEOUT};
use engine::Engine;
use serde_json::json;

const TESTER: &str = "tester@example.com";

/// Events seeded for the stop and fault tests: enough that copying them on one thread per shard lasts a few
/// seconds, so that a stop or a fault lands mid-copy.
const FAULT_EVENTS: u64 = 400_000;

/// An engine on a fresh database of `cluster`, seeded with `events` demo events.
async fn seeded(cluster: &PrivateCluster, events: u64) -> Engine {
    let mut config = cluster.fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let definitions = vec![events_sort_key::definition(), backfill_person_id::definition(), move_old_partitions::definition()];
    let engine = Engine::connect(&config, definitions).await.expect("connect");
    seed(engine.clickhouse(), &SeedRequest::new(events)).await.expect("seed");
    engine
}

/// Every node's checksums of `table` (nodes 1 to 4).
async fn checksums_per_node(engine: &Engine, table: &str) -> Vec<Vec<PartitionChecksum>> {
    events_partition_checksums_on_every_node(engine.cluster().expect("a cluster"), table).await.expect("checksums")
}

async fn tables_per_node(engine: &Engine) -> Vec<Vec<String>> {
    let mut nodes = Vec::new();
    for node in engine.cluster().expect("a cluster").nodes() {
        let tables = node
            .clickhouse
            .client()
            .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
            .fetch_all::<String>()
            .await
            .expect("tables");
        nodes.push(tables);
    }
    nodes
}

/// An engine on [`FAULT_EVENTS`] seeded events with auto-rollback off and a runner, running 0001 on one
/// thread per shard until shard `shard` has a statement of the copy running. Returns the engine, the
/// runner (it stops when dropped), every node's checksums before the run, and the number of the node the
/// shard's copy runs on.
async fn copying_on_shard(
    cluster: &PrivateCluster,
    shard: i32,
) -> (Engine, tokio::sync::watch::Sender<bool>, Vec<Vec<PartitionChecksum>>, u16) {
    let engine = seeded(cluster, FAULT_EVENTS).await;
    let original = checksums_per_node(&engine, "events_local").await;
    engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.expect("disable auto-rollback");
    let runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.expect("start");
    let copying = wait_for(&engine, NAME, Duration::from_secs(60), &format!("copying on shard {shard}"), |overview| {
        overview.record.current_operation_index == 1
            && overview.record.shards.iter().any(|running| running.shard == shard && !running.current_query_id.is_empty())
    })
    .await;
    let node = cluster.node_at(&copying.record.shards.iter().find(|running| running.shard == shard).unwrap().node);
    (engine, runner, original, node)
}

async fn settled(engine: &Engine) -> engine::MigrationOverview {
    settled_migration(engine, NAME).await
}

async fn settled_migration(engine: &Engine, name: &str) -> engine::MigrationOverview {
    wait_for(engine, name, Duration::from_secs(180), "settled", is_settled).await
}

async fn distributed_count(engine: &Engine) -> u64 {
    engine.clickhouse().client().query("SELECT count() FROM events").fetch_one().await.expect("count events")
}

/// Each shard holds part of the events, and its two replicas the same rows.
fn assert_sharded_and_replicated(per_node: &[Vec<PartitionChecksum>]) {
    assert_eq!(per_node.len(), 4);
    assert_eq!(per_node[0], per_node[1], "shard 1's replicas differ");
    assert_eq!(per_node[2], per_node[3], "shard 2's replicas differ");
    assert_ne!(per_node[0], per_node[2], "both shards hold the same rows");
    assert!(per_node[0].len() >= 18 && per_node[2].len() >= 18, "every month on both shards");
}

#[tokio::test]
async fn events_sort_key_then_backfill_person_id_run_on_every_shard() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, 200_000).await;
    let original = checksums_per_node(&engine, "events_local").await;
    assert_sharded_and_replicated(&original);
    assert_eq!(distributed_count(&engine).await, 200_000);

    let _runner = spawn_runner(&engine);
    let started = std::time::Instant::now();
    engine.start(NAME, TESTER, &serde_json::Map::new()).await.expect("start");
    let done = settled(&engine).await;
    eprintln!("0001 on the cluster took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);

    assert_eq!(checksums_per_node(&engine, "events_local").await, original, "every node holds its shard's rows");
    assert_eq!(checksums_per_node(&engine, "events_0001_backup").await, original);
    assert_eq!(distributed_count(&engine).await, 200_000);
    for node in engine.cluster().unwrap().nodes() {
        let (sorting_key, sampling_key): (String, String) = node
            .clickhouse
            .client()
            .query("SELECT sorting_key, sampling_key FROM system.tables WHERE database = currentDatabase() AND name = 'events_local'")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(sorting_key, "team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid", "node {}", node.address);
        assert_eq!(sampling_key, "cityHash64(distinct_id)", "node {}", node.address);
    }
    let metrics = engine.metrics().await.expect("metrics");
    let copied = metrics.migrations.iter().find(|migration| migration.name == NAME).and_then(|migration| migration.rows_copied);
    assert_eq!(copied, Some(200_000), "the rows copied are the shards' sum");
    // The last operation that ran per shard (verify) is recorded for each shard, on one replica of it.
    let shards = &done.record.shards;
    assert_eq!(shards.iter().map(|shard| shard.shard).collect::<Vec<_>>(), [1, 2], "{shards:?}");
    for shard in shards {
        assert_eq!(shard.operation_index, 4);
        assert_eq!(shard.progress, 100);
        let node = cluster.node_at(&shard.node);
        assert!((2 * shard.shard as u16 - 1..=2 * shard.shard as u16).contains(&node), "shard {} ran on node {node}", shard.shard);
    }

    engine.start(backfill_person_id::NAME, TESTER, &serde_json::Map::new()).await.expect("start 0002");
    let done = settled_migration(&engine, backfill_person_id::NAME).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(backfill_person_id::NAME).await);
    assert_eq!(
        done.record.shards.iter().map(|shard| (shard.shard, shard.operation_index, shard.progress)).collect::<Vec<_>>(),
        [(1, 2, 100), (2, 2, 100)]
    );
    // Every replica of every shard: each local event has its person's id (person is on every node), and the
    // lookup tables are gone.
    let person_ids = person_ids_per_node(&engine).await;
    assert!(
        person_ids.iter().all(|(rows, wrong)| *rows > 0 && *wrong == 0),
        "every replica's events have their person's id: {person_ids:?}"
    );
    assert_eq!(person_ids[0].0 + person_ids[2].0, 200_000, "the shards together hold every event once");
    for node in engine.cluster().unwrap().nodes() {
        let lookups: u64 = node
            .clickhouse
            .client()
            .query("SELECT count() FROM system.tables WHERE name LIKE '%person_lookup_0002'")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(lookups, 0, "a lookup table is left on node {}", node.address);
    }
    let through_distributed: u64 = engine
        .clickhouse()
        .client()
        .query("SELECT count() FROM events WHERE person_id != toUUID('00000000-0000-0000-0000-000000000000')")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(through_distributed, 200_000, "the Distributed events has the column too");

    // 0003 moves the old months into the archive on every shard, then its rollback moves them back.
    let before = checksums_per_node(&engine, "events_local").await;
    engine.start(move_old_partitions::NAME, TESTER, &serde_json::Map::new()).await.expect("start 0003");
    let moved = settled_migration(&engine, move_old_partitions::NAME).await;
    assert_eq!(moved.record.status, Status::Completed, "{:?}", engine.errors(move_old_partitions::NAME).await);
    let cutoff = move_old_partitions::cutoff_month(chrono::Utc::now(), 12).to_string();
    let (kept, archived) = (checksums_per_node(&engine, "events_local").await, checksums_per_node(&engine, "events_archive_local").await);
    for (node, before) in before.iter().enumerate() {
        let (old, recent): (Vec<_>, Vec<_>) = before.iter().cloned().partition(|partition| partition.partition_id < cutoff);
        assert!(!old.is_empty() && !recent.is_empty(), "node {}: seeded months on both sides of {cutoff}", node + 1);
        assert_eq!(archived[node], old, "node {}: the archive holds exactly the old months", node + 1);
        assert_eq!(kept[node], recent, "node {}: the events keep exactly the recent months", node + 1);
    }
    assert_eq!(distributed_count(&engine).await + distributed_rows(&engine, "events_archive").await, 200_000);
}

#[tokio::test]
async fn move_old_partitions_failing_on_one_shard_rolls_back_every_shard() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, 40_000).await;
    let _runner = spawn_runner(&engine);
    for name in [NAME, backfill_person_id::NAME] {
        engine.start(name, TESTER, &serde_json::Map::new()).await.expect("start");
        assert_eq!(settled_migration(&engine, name).await.record.status, Status::Completed, "{:?}", engine.errors(name).await);
    }
    let before = checksums_per_node(&engine, "events_local").await;
    // Shard 2's archive gets a column events_local lacks (an ALTER on one replica reaches the other through
    // ZooKeeper, not the other shard): partition operations refuse tables of different structures, so shard 2
    // fails at its first month, after shard 1 may have moved some of its own.
    let clickhouse = engine.clickhouse();
    let create = engine::recipes::rewrite_table::create_table_like_sql(clickhouse, "events_local", "events_archive_local").await.unwrap();
    clickhouse.client().query(&create).execute().await.expect("create the archive");
    let shard_two = engine.cluster().unwrap().nodes().iter().find(|node| node.shard == 2).unwrap().clickhouse.clone();
    let alter = format!("ALTER TABLE {} ADD COLUMN extra UInt8", shard_two.qualified("events_archive_local"));
    shard_two.client().query(&alter).execute().await.expect("alter shard 2's archive");

    engine.start(move_old_partitions::NAME, TESTER, &serde_json::Map::new()).await.expect("start 0003");
    let rolled_back = settled_migration(&engine, move_old_partitions::NAME).await;
    assert_eq!(rolled_back.record.status, Status::RolledBack);
    let errors = engine.errors(move_old_partitions::NAME).await.unwrap();
    assert!(errors.iter().any(|error| error.message.contains("shard 2")), "{errors:?}");
    assert_eq!(checksums_per_node(&engine, "events_local").await, before, "every month is back on every replica");
    for tables in tables_per_node(&engine).await {
        assert!(!tables.iter().any(|table| table.starts_with("events_archive")), "an archive table is left: {tables:?}");
    }
}

async fn distributed_rows(engine: &Engine, table: &str) -> u64 {
    engine.clickhouse().client().query(&format!("SELECT count() FROM {table}")).fetch_one().await.expect("count")
}

#[tokio::test]
async fn stop_and_rollback_mid_copy_restores_every_shard() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, FAULT_EVENTS).await;
    let original = checksums_per_node(&engine, "events_local").await;
    let original_tables = tables_per_node(&engine).await;
    let _runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.expect("start");
    let copying = wait_for(&engine, NAME, Duration::from_secs(60), "copying on both shards", |overview| {
        overview.record.current_operation_index == 1
            && overview.record.shards.len() == 2
            && overview.record.shards.iter().all(|shard| !shard.current_query_id.is_empty())
    })
    .await;
    for shard in &copying.record.shards {
        assert!(shard.current_query_id.contains(&format!("-op1-shard{}-", shard.shard)), "{shard:?}");
    }
    engine.stop(NAME, TESTER, true).await.expect("stop");
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::RolledBack, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums_per_node(&engine, "events_local").await, original);
    assert_eq!(tables_per_node(&engine).await, original_tables, "events_0001_new is gone from every node");
    for node in engine.cluster().unwrap().nodes() {
        let running: u64 =
            node.clickhouse.client().query("SELECT count() FROM system.processes WHERE query_id LIKE 'amigo-%'").fetch_one().await.unwrap();
        assert_eq!(running, 0, "a query of the migration still runs on {}", node.address);
    }
}

/// Each node's mutations of 0002 on `events_local`, as (mutation id, done).
async fn backfill_mutations_per_node(engine: &Engine) -> Vec<Vec<(String, u8)>> {
    let mut nodes = Vec::new();
    for node in engine.cluster().expect("a cluster").nodes() {
        let mutations = node
            .clickhouse
            .client()
            .query(
                "SELECT mutation_id, is_done FROM system.mutations WHERE database = currentDatabase() AND table = 'events_local'
                 AND command LIKE '%person_id = joinGet(%' ORDER BY mutation_id",
            )
            .fetch_all()
            .await
            .expect("mutations");
        nodes.push(mutations);
    }
    nodes
}

/// Every node's events carrying their person's id, checked against `person` (on every node): (rows, wrong).
async fn person_ids_per_node(engine: &Engine) -> Vec<(u64, u64)> {
    let mut nodes = Vec::new();
    for node in engine.cluster().expect("a cluster").nodes() {
        let client = node.clickhouse.client();
        client.query(&format!("SYSTEM SYNC REPLICA {}", node.clickhouse.qualified("events_local"))).execute().await.unwrap();
        let counts = client
            .query(
                "SELECT count(), countIf(person_id != id) FROM events_local
                 ANY LEFT JOIN (SELECT team_id, distinct_id, id FROM person FINAL) USING (team_id, distinct_id)",
            )
            .fetch_one()
            .await
            .unwrap();
        nodes.push(counts);
    }
    nodes
}

#[tokio::test]
async fn backfill_person_id_stopped_mid_mutation_on_every_shard_then_resumed_fills_every_replica() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, FAULT_EVENTS).await;
    let _runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, &serde_json::Map::new()).await.expect("start 0001");
    assert_eq!(settled(&engine).await.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    let events = checksums_per_node(&engine, "events_local").await;
    // A slow mutation (it deletes nothing, sleeping 30 µs per row) queued on every shard ahead of 0002's: each
    // replica runs a table's mutations in order, so 0002's stays pending for seconds on every shard.
    let slow = format!(
        "ALTER TABLE {}{} DELETE WHERE sleepEachRow(0.00003) != 0",
        engine.clickhouse().qualified("events_local"),
        engine.clickhouse().on_cluster()
    );
    engine.clickhouse().client().query(&slow).execute().await.expect("queue a slow mutation");

    engine.start(backfill_person_id::NAME, TESTER, &serde_json::Map::new()).await.expect("start 0002");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let issued = loop {
        let mutations = backfill_mutations_per_node(&engine).await;
        if mutations.iter().all(|node| node.len() == 1 && node[0].1 == 0) {
            break mutations;
        }
        assert!(std::time::Instant::now() < deadline, "0002's mutation never pending on every node: {mutations:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    engine.stop(backfill_person_id::NAME, TESTER, false).await.expect("stop");
    let stopped = settled_migration(&engine, backfill_person_id::NAME).await;
    assert_eq!(stopped.record.status, Status::Errored);
    assert_eq!(stopped.record.current_operation_index, 2);
    let message = engine.errors(backfill_person_id::NAME).await.unwrap().last().expect("an error").message.clone();
    assert!(message.starts_with(&format!("stopped by {TESTER} during operation 2")), "{message}");
    for shard in 1..=2 {
        let mutation_id = &issued[2 * shard - 2][0].0;
        assert!(message.contains(&format!("shard {shard}: ")), "the stop names what it did on shard {shard}: {message}");
        if engine.clickhouse().capabilities().kills_mutations() {
            assert!(message.contains(&format!("mutation {mutation_id} was killed")), "{message}");
        } else {
            assert!(message.contains(&format!("mutation {mutation_id} goes on")), "{message}");
        }
    }
    if !engine.clickhouse().capabilities().kills_mutations() {
        // As the message says: the mutation goes on to its end by itself, on every replica.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while backfill_mutations_per_node(&engine).await.iter().flatten().any(|(_, done)| *done == 0) {
            assert!(std::time::Instant::now() < deadline, "the mutations never finished");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    engine.resume(backfill_person_id::NAME, TESTER).await.expect("resume");
    let done = settled_migration(&engine, backfill_person_id::NAME).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(backfill_person_id::NAME).await);
    let after = backfill_mutations_per_node(&engine).await;
    if engine.clickhouse().capabilities().kills_mutations() {
        assert!(after.iter().all(|node| node.len() == 2 && node.iter().all(|(_, done)| *done == 1)), "killed, then one more: {after:?}");
    } else {
        let expected: Vec<Vec<(String, u8)>> = issued.iter().map(|node| vec![(node[0].0.clone(), 1)]).collect();
        assert_eq!(after, expected, "the resume found each shard's mutation done and issued no other");
    }
    let person_ids = person_ids_per_node(&engine).await;
    assert!(
        person_ids.iter().all(|(rows, wrong)| *rows > 0 && *wrong == 0),
        "every replica's events have their person's id: {person_ids:?}"
    );
    assert_eq!(person_ids[0].0 + person_ids[2].0, FAULT_EVENTS, "the shards together hold every event once");
    assert_eq!(checksums_per_node(&engine, "events_local").await, events, "the event columns are untouched on every replica");
}

#[tokio::test]
async fn a_node_killed_mid_copy_errors_the_migration_and_resume_finishes_once_it_is_back() {
    let cluster = PrivateCluster::start().await;
    let (engine, _runner, original, killed) = copying_on_shard(&cluster, 1).await;
    cluster.kill_node(killed).await;

    let errored = settled(&engine).await;
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 1);
    let errors = engine.errors(NAME).await.unwrap();
    let message = &errors.last().expect("an error").message;
    assert!(message.contains("shard 1"), "{message}");

    cluster.start_node(killed).await;
    engine.resume(NAME, TESTER).await.expect("resume");
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums_per_node(&engine, "events_local").await, original);
    assert_eq!(distributed_count(&engine).await, FAULT_EVENTS);
}

#[tokio::test]
async fn the_entry_node_killed_mid_copy_the_migration_resumes_through_another_node() {
    let cluster = PrivateCluster::start().await;
    // Node 1 is the entry amigo was pointed at, and shard 1's least lagging replica: its copy runs there.
    let (engine, _runner, original, killed) = copying_on_shard(&cluster, 1).await;
    assert_eq!(killed, 1, "shard 1's copy runs on the entry node");
    cluster.kill_node(killed).await;
    let errored = settled(&engine).await;
    assert_eq!(errored.record.status, Status::Errored);

    // With node 1 still down, an instance that lists several entry nodes connects through the next one...
    let mut config = engine.config().clone();
    config.clickhouse_url = format!("{},{}", cluster.node_url(1), cluster.node_url(2));
    let definitions = vec![events_sort_key::definition(), backfill_person_id::definition(), move_old_partitions::definition()];
    let second = Engine::connect(&config, definitions).await.expect("connect through node 2");
    assert_eq!(second.clickhouse().url(), cluster.node_url(2));
    // ...and the resumed run goes through a node that answers, shard 1's copy on its other replica. Resumed once
    // ZooKeeper has expired the dead node's session: before that, node 2 may hand statements to node 1 as its
    // shard's leader (a CI run saw Code 210, connection refused to node 1, from node 2).
    tokio::time::sleep(ZOOKEEPER_SESSION_TIMEOUT + Duration::from_secs(2)).await;
    engine.resume(NAME, TESTER).await.expect("resume");
    let resumed = wait_for(&engine, NAME, Duration::from_secs(60), "shard 1 copying on node 2", |overview| {
        overview
            .record
            .shards
            .iter()
            .any(|shard| shard.shard == 1 && cluster.node_at(&shard.node) == 2 && overview.record.status == Status::Running)
    })
    .await;
    let shard_one = resumed.record.shards.iter().find(|shard| shard.shard == 1).unwrap();
    let dead = shard_one.replicas.iter().find(|replica| cluster.node_at(&replica.node) == 1).expect("node 1 listed");
    assert!(!dead.answering, "{dead:?}");

    // Statements sent ON CLUSTER (the swap) wait for every node: bring node 1 back while the copy goes on.
    cluster.start_node(killed).await;
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums_per_node(&engine, "events_local").await, original, "every replica holds its shard's rows once");
    assert_eq!(distributed_count(&engine).await, FAULT_EVENTS);
}

#[tokio::test]
async fn a_cluster_name_the_server_does_not_know_is_refused_at_connect() {
    let mut config = engine::testing::fresh_databases().await;
    config.clickhouse_cluster = Some("no_such_cluster".into());
    let refused = Engine::connect(&config, vec![events_sort_key::definition()]).await.err().expect("refused");
    let message = refused.to_string();
    assert!(message.contains("no cluster \"no_such_cluster\" in system.clusters"), "{message}");
    assert!(message.contains("AMIGO_CLICKHOUSE_CLUSTER"), "{message}");
}

#[tokio::test]
async fn a_node_paused_mid_copy_fails_its_shard_within_seconds_and_resume_finishes_once_it_answers() {
    let cluster = PrivateCluster::start().await;
    // Shard 2's node is not the one amigo connects to: only the shard's own watch can notice it.
    let (engine, _runner, original, paused) = copying_on_shard(&cluster, 2).await;
    cluster.pause_node(paused).await;
    let paused_at = std::time::Instant::now();

    let errored = settled(&engine).await;
    let noticed = paused_at.elapsed();
    eprintln!("a paused node failed its shard after {:.1} s", noticed.as_secs_f64());
    assert!(noticed < Duration::from_secs(40), "noticed after {noticed:?}");
    assert_eq!(errored.record.status, Status::Errored);
    let errors = engine.errors(NAME).await.unwrap();
    let message = &errors.last().expect("an error").message;
    assert!(message.contains("shard 2") && message.contains("stopped answering"), "{message}");

    cluster.resume_node(paused).await;
    engine.resume(NAME, TESTER).await.expect("resume");
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(checksums_per_node(&engine, "events_local").await, original);
}

/// The checkpoint test's migration fails shard 1 once, at its third step.
static FAIL_SHARD_ONE_ONCE: AtomicBool = AtomicBool::new(true);
const STEPS: u64 = 5;

/// Writes `(shard, step)` rows into `steps` on each shard's node, one step at a time, saving the shard's
/// checkpoint after each; shard 1 fails once at step 2, after shard 2 has had time to finish.
async fn count_steps_on_every_shard(context: MigrationContext) -> engine::Result<()> {
    context
        .on_every_shard(|context| async move {
            let first = context.checkpoint().and_then(|checkpoint| checkpoint["done"].as_u64()).unwrap_or(0);
            for step in first..STEPS {
                if context.shard_number() == 1 && step == 2 && FAIL_SHARD_ONE_ONCE.swap(false, Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err(engine::Error::Migration("shard 1 fails once, at step 2".into()));
                }
                let insert = format!("INSERT INTO {} VALUES ({}, {step})", context.clickhouse.qualified("steps"), context.shard_number());
                context.clickhouse_execute(&insert, &QueryOptions::default()).await?;
                context.save_checkpoint(json!({ "done": step + 1 })).await?;
                context.report_progress((step + 1) as f64 / STEPS as f64).await?;
            }
            Ok(())
        })
        .await
}

#[tokio::test]
async fn each_shard_resumes_from_its_own_checkpoint() {
    let cluster = PrivateCluster::start().await;
    let mut config = cluster.fresh_databases().await;
    config.lease_timeout = Duration::from_secs(2);
    let definition = MigrationDefinition::new("test_shard_checkpoints", "count steps on every shard").operation(Operation::rust(
        "count steps on every shard",
        count_steps_on_every_shard,
        nothing_to_undo,
    ));
    let engine = Engine::connect(&config, vec![definition]).await.expect("connect");
    let create = "CREATE TABLE steps ON CLUSTER amigo_cluster (shard UInt32, step UInt64) ENGINE = MergeTree ORDER BY (shard, step)";
    engine.clickhouse().client().query(create).execute().await.expect("create steps");
    engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.expect("disable auto-rollback");
    let _runner = spawn_runner(&engine);

    engine.start("test_shard_checkpoints", TESTER, &serde_json::Map::new()).await.expect("start");
    let errored = settled_migration(&engine, "test_shard_checkpoints").await;
    assert_eq!(errored.record.status, Status::Errored);
    let checkpoints: Vec<(i32, Option<String>)> =
        sqlx::query_as("SELECT shard, checkpoint->>'done' FROM async_migration_shard WHERE migration_name = $1 ORDER BY shard")
            .bind("test_shard_checkpoints")
            .fetch_all(engine.store().pool())
            .await
            .unwrap();
    assert_eq!(checkpoints, [(1, Some("2".into())), (2, Some("5".into()))], "shard 1 stopped after 2 of 5 steps, shard 2 had finished");
    let progress: Vec<i16> = errored.record.shards.iter().map(|shard| shard.progress).collect();
    assert!(progress[0] < 100 && progress[1] == 100, "{progress:?}");

    engine.resume("test_shard_checkpoints", TESTER).await.expect("resume");
    let done = settled_migration(&engine, "test_shard_checkpoints").await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors("test_shard_checkpoints").await);
    let mut steps: Vec<(u32, u64)> = Vec::new();
    for node in engine.cluster().unwrap().nodes() {
        steps.extend(node.clickhouse.client().query("SELECT shard, step FROM steps").fetch_all::<(u32, u64)>().await.unwrap());
    }
    steps.sort();
    let every_step_once: Vec<(u32, u64)> = [1, 2].into_iter().flat_map(|shard| (0..STEPS).map(move |step| (shard, step))).collect();
    assert_eq!(steps, every_step_once, "no step ran twice, none was skipped");
}

#[tokio::test]
async fn too_many_parts_on_a_node_other_than_the_entry_fails_the_health_check_naming_the_node() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, 20_000).await;
    engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.expect("health check every second");
    engine.update_setting("disable_auto_rollback", &json!(true), TESTER).await.expect("disable auto-rollback");
    // Shard 2 (nodes 3 and 4; amigo connects to node 1): merges stopped, then one part per insert into one
    // partition, past the health check's limit of 250.
    let nodes = engine.cluster().expect("a cluster").nodes().to_vec();
    let shard_two: Vec<_> = nodes.iter().filter(|node| node.shard == 2).collect();
    for node in &shard_two {
        let stop_merges = format!("SYSTEM STOP MERGES {}", node.clickhouse.qualified("events_local"));
        node.clickhouse.client().query(&stop_merges).execute().await.expect("stop merges");
    }
    let crowded = shard_two[0];
    for row in 0..260 {
        let insert = format!(
            "INSERT INTO {} (uuid, event, team_id, distinct_id, properties, timestamp, created_at)
             VALUES (toUUID('00000000-0000-0000-0000-{row:012}'), 'crowding', 1, 'crowd', '{{}}', toDateTime('2024-01-15 00:00:00'), now())",
            crowded.clickhouse.qualified("events_local")
        );
        crowded.clickhouse.client().query(&insert).execute().await.expect("insert one part");
    }

    let _runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, json!({}).as_object().unwrap()).await.expect("start");
    let errored = settled(&engine).await;
    assert_eq!(errored.record.status, Status::Errored);
    let errors = engine.errors(NAME).await.unwrap();
    let message = &errors.last().expect("an error").message;
    assert!(message.contains("active parts"), "{message}");
    assert!(shard_two.iter().any(|node| message.contains(&format!("node {}", node.address))), "{message}");
}

#[tokio::test]
async fn a_lagging_replica_makes_the_run_wait_until_it_catches_up() {
    let cluster = PrivateCluster::start().await;
    let engine = seeded(&cluster, FAULT_EVENTS).await;
    let original = checksums_per_node(&engine, "events_local").await;
    engine.update_setting("max_replica_lag_seconds", &json!(1), TESTER).await.expect("lag bound of 1 s");
    let nodes = engine.cluster().expect("a cluster").nodes().to_vec();
    let (worker, lagging) = (&nodes[0], &nodes[1]);
    // Node 2, shard 1's second replica, stops fetching parts of events_local, and one event arrives on node 1:
    // node 2 falls behind by the seconds that part waits.
    let stop_fetches = format!("SYSTEM STOP FETCHES {}", lagging.clickhouse.qualified("events_local"));
    lagging.clickhouse.client().query(&stop_fetches).execute().await.expect("stop fetches");
    let insert = format!(
        "INSERT INTO {} (uuid, event, team_id, distinct_id, properties, timestamp, created_at)
         SELECT generateUUIDv4(), 'late', 1, 'late', '{{}}', now(), now()",
        worker.clickhouse.qualified("events_local")
    );
    worker.clickhouse.client().query(&insert).execute().await.expect("insert on node 1");
    // Started once node 2 reads as behind, so that the first throttle check already sees it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine::cluster::ReplicaState::read(&lagging.clickhouse, &lagging.address).await.lag_seconds <= 1 {
        assert!(std::time::Instant::now() < deadline, "node 2 never fell behind with its fetches stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shard_one_rows = events_partition_checksums(&worker.clickhouse, "events_local").await.expect("checksums");
    let expected = vec![shard_one_rows.clone(), shard_one_rows, original[2].clone(), original[3].clone()];
    let _runner = spawn_runner(&engine);
    engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.expect("start");

    let waiting = wait_for(&engine, NAME, Duration::from_secs(90), "waiting for the lagging replica", |overview| {
        let shard_one = overview.record.shards.iter().find(|shard| shard.shard == 1);
        let lag_shown =
            shard_one.is_some_and(|shard| shard.replicas.iter().any(|replica| replica.node == lagging.address && replica.lag_seconds > 0));
        let reason = overview.record.waiting_reason.as_deref().unwrap_or_default();
        reason.contains(&lagging.address) && reason.contains("behind") && lag_shown
    })
    .await;
    assert_eq!(waiting.phase, engine::status::Phase::Waiting);
    let shard_one = waiting.record.shards.iter().find(|shard| shard.shard == 1).unwrap();
    assert_eq!(shard_one.node, worker.address, "shard 1 works on its replica that is not behind");
    assert!(shard_one.replicas.iter().all(|replica| replica.node != worker.address), "{shard_one:?}");
    // It waits, it does not fail: some seconds on, still waiting.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = engine.migration(NAME).await.unwrap();
    assert_eq!(still.phase, engine::status::Phase::Waiting, "{:?}", engine.errors(NAME).await);

    let start_fetches = stop_fetches.replace("STOP", "START");
    lagging.clickhouse.client().query(&start_fetches).execute().await.expect("start fetches");
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", engine.errors(NAME).await);
    assert_eq!(
        checksums_per_node(&engine, "events_local").await,
        expected,
        "every replica holds its shard's rows, the late event included"
    );
}
