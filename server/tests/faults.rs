//! Faults, each on a Postgres and a ClickHouse of the test's own (`engine::testing::PrivateServices`, or for
//! the cluster case a `PrivateCluster`), so that killing, pausing or restarting a server never touches the
//! servers other tests share. Every case checks the data afterwards (rows and checksum of every partition
//! against the seeded original, on every replica on a cluster) and prints how long recovery took:
//! `cargo test -p server --test faults -- --nocapture` shows the figures.
//!
//! ClickHouse 18.16 only (`scripts/test`'s first tier): these cases kill, pause and restart the server
//! process, and the current ClickHouse of the second tier (chdb 26.9 inside `scripts/chdb-http`) is a library
//! in a process of its own, not a server that can stand in for that.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::{self, NAME};
use demo::{events_partition_checksums, events_partition_checksums_on_every_node, seed, PartitionChecksum, SeedRequest};
use engine::clickhouse::{quote_identifier, ClickHouse};
use engine::context::WAITING_FOR_CLICKHOUSE;
use engine::status::Status;
use engine::tables::partition_row_counts;
use engine::testing::{is_settled, table_names, wait_for, PrivateCluster, PrivateServices};
use engine::{Engine, EngineConfig, MigrationOverview};
use serde_json::json;
use sqlx::Connection;

mod support;

const TESTER: &str = "tester@example.com";

/// Events seeded for every case: 18 monthly partitions, copied in about a second on a shared two-core
/// machine, which keeps the suite within a few minutes.
const SEEDED_EVENTS: u64 = 1_000_000;

/// The lease timeout of the runner-kill cases (the README's default is 10 s).
const SHORT_LEASE: Duration = Duration::from_secs(2);

/// A group of cases on one private pair of servers, with the seeded events every case starts from.
struct Group {
    services: PrivateServices,
    template: Engine,
    original: Vec<PartitionChecksum>,
}

impl Group {
    async fn start() -> Group {
        let services = PrivateServices::start().await;
        let config = services.fresh_databases().await;
        let template = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
        seed(template.clickhouse(), &SeedRequest::new(SEEDED_EVENTS)).await.expect("seed");
        let original = events_partition_checksums(template.clickhouse(), "events").await.unwrap();
        Group { services, template, original }
    }

    /// A fresh pair of databases whose `events` holds the seeded events (its parts hard-linked from the
    /// template's: no copy), with 0001 not started.
    async fn case(&self, lease_timeout: Duration) -> Engine {
        let mut config = self.services.fresh_databases().await;
        config.lease_timeout = lease_timeout;
        let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
        let clickhouse = engine.clickhouse();
        let events = |engine: &Engine| format!("{}.events", quote_identifier(engine.clickhouse().database()));
        let (source, target) = (events(&self.template), events(&engine));
        clickhouse.client().query(&format!("CREATE TABLE {target} AS {source}")).execute().await.unwrap();
        for (partition_id, _) in partition_row_counts(self.template.clickhouse(), "events").await.unwrap() {
            let attach = format!("ALTER TABLE {target} ATTACH PARTITION ID '{partition_id}' FROM {source}");
            clickhouse.client().query(&attach).execute().await.unwrap();
        }
        assert_eq!(events_partition_checksums(clickhouse, "events").await.unwrap(), self.original);
        engine
    }

    /// The migrated `events` holds exactly the seeded events, under the new keys, with the original kept as
    /// the backup: what a clean run leaves.
    async fn assert_migrated(&self, engine: &Engine) {
        let clickhouse = engine.clickhouse();
        assert_eq!(events_partition_checksums(clickhouse, "events").await.unwrap(), self.original, "events equals a clean run's");
        assert_eq!(
            events_partition_checksums(clickhouse, "events_0001_backup").await.unwrap(),
            self.original,
            "the backup is the original"
        );
        assert_eq!(sorting_key(engine).await, "team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid");
        assert_eq!(table_names(engine).await, ["events", "events_0001_backup"]);
        assert_eq!(running_migration_queries(engine.clickhouse()).await, 0, "nothing of the migration still runs in ClickHouse");
    }

    /// `events` is the original, untouched, and nothing else is left.
    async fn assert_original(&self, engine: &Engine) {
        assert_eq!(events_partition_checksums(engine.clickhouse(), "events").await.unwrap(), self.original, "events is the original");
        assert_eq!(sorting_key(engine).await, "team_id, toDate(timestamp), event, distinct_id, uuid");
        assert_eq!(table_names(engine).await, ["events"]);
        assert_eq!(running_migration_queries(engine.clickhouse()).await, 0, "nothing of the migration still runs in ClickHouse");
    }
}

async fn sorting_key(engine: &Engine) -> String {
    engine
        .clickhouse()
        .client()
        .query("SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
        .fetch_one()
        .await
        .unwrap()
}

/// Statements of the migration that still run on `clickhouse` and name its database.
async fn running_migration_queries(clickhouse: &ClickHouse) -> u64 {
    clickhouse
        .client()
        .query("SELECT count() FROM system.processes WHERE startsWith(query_id, 'amigo-0001_events_sort_key-') AND position(query, currentDatabase()) > 0")
        .fetch_one()
        .await
        .unwrap()
}

/// An `amigo` process with its JSON log lines collected; killed (SIGKILL) when dropped, however the test ends.
struct Amigo {
    child: Child,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Amigo {
    fn spawn(config: &EngineConfig, arguments: &[&str]) -> Amigo {
        let mut child = support::amigo_command(config, arguments)
            .env("AMIGO_LOG", "warn,engine::runner=info")
            .env("AMIGO_LOG_JSON", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn amigo");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                // Progress lines of `--wait` are plain text: kept as strings.
                let entry = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                collected.lock().unwrap().push(entry);
            }
        });
        Amigo { child, log }
    }

    fn worker(config: &EngineConfig) -> Amigo {
        Amigo::spawn(config, &["worker"])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True when `runner_id` names a runner of this process (runner ids are host-pid-unique).
    fn owns(&self, runner_id: &str) -> bool {
        runner_id.contains(&format!("-{}-", self.pid()))
    }

    /// How many log lines carry `message` (e.g. `claimed`, `runner started`).
    fn messages(&self, message: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|entry| entry["fields"]["message"] == message).count()
    }

    async fn wait_for_message(&self, message: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.messages(message) == 0 {
            assert!(Instant::now() < deadline, "amigo never logged {message:?}: {:?}", self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Amigo {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("log of amigo process {}:", self.pid());
            for entry in self.log.lock().unwrap().iter() {
                eprintln!("  {entry}");
            }
        }
    }
}

async fn settled(engine: &Engine) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(120), "settled", is_settled).await
}

/// Waits until the copy (operation 1) has copied `partitions` partitions and its next statement runs.
async fn copying(engine: &Engine, partitions: usize) -> MigrationOverview {
    wait_for(engine, NAME, Duration::from_secs(60), "copying", |overview| {
        let record = &overview.record;
        let copied = record.checkpoint.as_ref().and_then(|checkpoint| checkpoint["copied"].as_array()).map_or(0, Vec::len);
        record.status == Status::Running
            && record.current_operation_index == 1
            && copied >= partitions
            && !record.current_query_id.is_empty()
    })
    .await
}

async fn error_messages(engine: &Engine) -> Vec<String> {
    engine.errors(NAME).await.unwrap().into_iter().map(|error| error.message).collect()
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Holds a run at the end of operation `operation`: a trigger makes the runner's write of the next operation
/// index wait for an advisory lock this connection holds. Operations 0, 2 and 3 take milliseconds; held
/// there, the runner has done the operation's work and not recorded it, which is where a death is hardest
/// to recover from.
struct OperationEndHold {
    connection: sqlx::PgConnection,
}

/// The advisory lock key of [`OperationEndHold`].
const HOLD_LOCK: i64 = 60_001;

impl OperationEndHold {
    async fn install(engine: &Engine, operation: usize) -> OperationEndHold {
        let mut connection = sqlx::PgConnection::connect(&engine.config().database_url).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)").bind(HOLD_LOCK).execute(&mut connection).await.unwrap();
        let trigger = format!(
            "CREATE FUNCTION hold_operation_end() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_advisory_lock({HOLD_LOCK}); PERFORM pg_advisory_unlock({HOLD_LOCK}); RETURN NEW; END $$;
             CREATE TRIGGER hold_operation_end BEFORE UPDATE ON async_migration FOR EACH ROW
             WHEN (OLD.current_operation_index = {operation} AND NEW.current_operation_index = {next})
             EXECUTE FUNCTION hold_operation_end();",
            next = operation + 1
        );
        sqlx::raw_sql(&trigger).execute(&mut connection).await.unwrap();
        OperationEndHold { connection }
    }

    /// Waits until a runner waits at the hold.
    async fn wait_until_held(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(&mut self.connection)
                .await
                .unwrap();
            if waiting > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no runner reached the hold");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets the held runner go on, and removes the hold.
    async fn let_through(mut self) {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(HOLD_LOCK).execute(&mut self.connection).await.unwrap();
        self.remove().await;
    }

    /// Ends the held write of a killed runner (a backend does not notice its client died while it waits),
    /// and removes the hold.
    async fn release_killed(mut self) {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            .execute(&mut self.connection)
            .await
            .unwrap();
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(HOLD_LOCK).execute(&mut self.connection).await.unwrap();
        self.remove().await;
    }

    async fn remove(&mut self) {
        sqlx::raw_sql("DROP TRIGGER hold_operation_end ON async_migration; DROP FUNCTION hold_operation_end()")
            .execute(&mut self.connection)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_in_each_operation_is_errored_within_the_lease_timeout_and_resumed_to_a_clean_result() {
    let group = Group::start().await;
    for operation in 0..=4 {
        let engine = group.case(SHORT_LEASE).await;
        let config = engine.config().clone();
        // The copy runs for about a second: killed mid-statement. The others take milliseconds: held at their
        // end; verification (4) is entered with ClickHouse paused, so that its statements wait.
        let hold = match operation {
            1 => None,
            4 => Some(OperationEndHold::install(&engine, 3).await),
            _ => Some(OperationEndHold::install(&engine, operation).await),
        };
        let mut runner = Amigo::spawn(&config, &["migrations", "start", NAME, "--wait", "--param", "max_threads=1"]);
        let (where_killed, held) = match hold {
            None => {
                copying(&engine, 2).await;
                ("mid-statement, two partitions copied", None)
            }
            Some(mut hold) if operation == 4 => {
                hold.wait_until_held().await;
                group.services.pause_clickhouse().await;
                hold.let_through().await;
                wait_for(&engine, NAME, Duration::from_secs(60), "verifying", |overview| {
                    overview.record.status == Status::Running && overview.record.current_operation_index == 4
                })
                .await;
                ("mid-verification, its statements waiting for a paused ClickHouse", None)
            }
            Some(mut hold) => {
                hold.wait_until_held().await;
                ("after its work, before its end was recorded", Some(hold))
            }
        };
        let dying = engine.migration(NAME).await.unwrap().record;
        assert_eq!(dying.current_operation_index, operation as i32);
        let dead_runner = dying.runner_id.clone().expect("a runner holds it");
        runner.kill();
        let killed = Instant::now();
        if let Some(hold) = held {
            hold.release_killed().await;
        }
        if operation == 4 {
            group.services.resume_clickhouse().await;
        }

        let _worker = Amigo::worker(&config);
        let errored = settled(&engine).await;
        let to_errored = killed.elapsed();
        assert_eq!(errored.record.status, Status::Errored);
        assert_eq!(errored.record.current_operation_index, operation as i32);
        assert_eq!(
            error_messages(&engine).await,
            [format!("runner {dead_runner} died during operation {operation}; resume it, or roll it back")]
        );
        // Its last heartbeat is at most a heartbeat interval older than the kill; the reaper looks once per
        // heartbeat interval.
        assert!(to_errored < SHORT_LEASE + Duration::from_secs(1), "errored {to_errored:?} after the kill");

        let resumed = Instant::now();
        engine.resume(NAME, TESTER).await.unwrap();
        let done = settled(&engine).await;
        let to_completed = resumed.elapsed();
        assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
        group.assert_migrated(&engine).await;
        println!(
            "runner SIGKILL in operation {operation} ({where_killed}): errored {} after the kill, resume completed in {}",
            seconds(to_errored),
            seconds(to_completed)
        );
    }
}

/// Events seeded for the cluster case: copying them on one thread per shard lasts a few seconds.
const CLUSTER_EVENTS: u64 = 400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_runner_killed_mid_copy_is_errored_and_resumed_to_every_replica_holding_its_shards_rows() {
    let cluster = PrivateCluster::start().await;
    let mut config = cluster.fresh_databases().await;
    config.lease_timeout = SHORT_LEASE;
    let engine = Engine::connect(&config, vec![events_sort_key::definition()]).await.expect("connect");
    seed(engine.clickhouse(), &SeedRequest::new(CLUSTER_EVENTS)).await.expect("seed");
    let nodes = engine.cluster().expect("a cluster");
    let original = events_partition_checksums_on_every_node(nodes, "events_local").await.unwrap();

    let mut runner = Amigo::spawn(&config, &["migrations", "start", NAME, "--wait", "--param", "max_threads=1"]);
    let copying = wait_for(&engine, NAME, Duration::from_secs(60), "copying on both shards", |overview| {
        overview.record.current_operation_index == 1
            && overview.record.shards.len() == 2
            && overview.record.shards.iter().all(|shard| !shard.current_query_id.is_empty())
    })
    .await;
    let dead_runner = copying.record.runner_id.clone().expect("a runner holds it");
    assert!(runner.owns(&dead_runner), "{dead_runner}");
    runner.kill();
    let killed = Instant::now();

    let _worker = Amigo::worker(&config);
    let errored = settled(&engine).await;
    let to_errored = killed.elapsed();
    assert_eq!(errored.record.status, Status::Errored);
    assert_eq!(errored.record.current_operation_index, 1);
    assert_eq!(error_messages(&engine).await, [format!("runner {dead_runner} died during operation 1; resume it, or roll it back")]);
    assert!(to_errored < SHORT_LEASE + Duration::from_secs(1), "errored {to_errored:?} after the kill");
    for node in nodes.nodes() {
        assert_eq!(running_migration_queries(&node.clickhouse).await, 0, "the dead runner's copy was killed on {}", node.address);
    }

    let resumed = Instant::now();
    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    let to_completed = resumed.elapsed();
    assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
    assert_eq!(
        events_partition_checksums_on_every_node(nodes, "events_local").await.unwrap(),
        original,
        "every replica holds its shard's rows, once"
    );
    assert_eq!(
        events_partition_checksums_on_every_node(nodes, "events_0001_backup").await.unwrap(),
        original,
        "the backup is the original"
    );
    for node in nodes.nodes() {
        assert_eq!(running_migration_queries(&node.clickhouse).await, 0, "nothing of the migration still runs on {}", node.address);
    }
    println!(
        "runner SIGKILL mid-copy on a 2x2 cluster: errored {} after the kill, resume completed in {}",
        seconds(to_errored),
        seconds(to_completed)
    );
}

/// The runner ids that held migration `NAME`, in order, once per stretch they held it: polled every few
/// milliseconds until the returned sender sends.
fn watch_runner_ids(engine: &Engine) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Vec<String>>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let engine = engine.clone();
    let watcher = tokio::spawn(async move {
        let (mut holders, mut last) = (Vec::new(), None);
        while stopped.try_recv() == Err(tokio::sync::oneshot::error::TryRecvError::Empty) {
            let holder = engine.migration(NAME).await.unwrap().record.runner_id;
            if holder != last {
                holders.extend(holder.clone());
                last = holder;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        holders
    });
    (stop, watcher)
}

/// The status line of `GET /healthz` on `port`, once the server accepts connections.
async fn healthz(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            return response.lines().next().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `amigo` to its end (a CLI command) and checks it succeeded.
fn run_cli(config: &EngineConfig, arguments: &[&str]) {
    let mut command = Amigo::spawn(config, arguments);
    let status = command.child.wait().unwrap();
    assert!(status.success(), "amigo {} failed: {:?}", arguments.join(" "), command.log.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_a_worker_run_a_migration_once_and_a_stop_through_any_of_them_reaches_its_runner() {
    let group = Group::start().await;
    let engine = group.case(Duration::from_secs(10)).await;
    let config = engine.config().clone();
    let listeners: Vec<std::net::TcpListener> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect();
    drop(listeners);
    let mut processes: Vec<Amigo> = ports
        .iter()
        .map(|port| Amigo::spawn(&config, &["serve", "--listen", &format!("127.0.0.1:{port}")]))
        .chain([Amigo::worker(&config)])
        .collect();
    let names = [format!("amigo serve on :{}", ports[0]), format!("amigo serve on :{}", ports[1]), "amigo worker".into()];
    for process in &processes {
        process.wait_for_message("runner started").await;
    }
    for port in &ports {
        assert_eq!(healthz(*port).await, "HTTP/1.0 200 OK");
    }
    let (stop_watching, watcher) = watch_runner_ids(&engine);
    let holder_process =
        |processes: &[Amigo], runner_id: &str| processes.iter().position(|process| process.owns(runner_id)).expect("one of ours");

    // Run 1: started and stopped through the engine, as the staff page's server functions do.
    engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
    let first = copying(&engine, 2).await.record.runner_id.unwrap();
    let stop_requested = Instant::now();
    engine.stop(NAME, TESTER, false).await.unwrap();
    let stopped = settled(&engine).await;
    let first_stop = stop_requested.elapsed();
    assert_eq!(stopped.record.status, Status::Errored);
    assert_eq!(error_messages(&engine).await.last().unwrap(), &format!("stopped by {TESTER} during operation 1"));
    let first_process = holder_process(&processes, &first);

    // The process that ran it shuts down, so the next run lands in another one.
    assert!(engine::testing::send_signal(processes[first_process].pid(), "TERM"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes[first_process].child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "amigo did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Run 2: resumed and stopped with the command line.
    let copied = stopped.record.checkpoint.as_ref().unwrap()["copied"].as_array().unwrap().len();
    run_cli(&config, &["migrations", "resume", NAME]);
    let second = copying(&engine, copied + 1).await.record.runner_id.unwrap();
    let second_process = holder_process(&processes, &second);
    assert_ne!(second_process, first_process);
    let stop_requested = Instant::now();
    run_cli(&config, &["migrations", "stop", NAME]);
    let stopped = settled(&engine).await;
    let second_stop = stop_requested.elapsed();
    assert_eq!(stopped.record.status, Status::Errored);
    let message = error_messages(&engine).await.pop().unwrap();
    assert!(message.starts_with("stopped by cli:") && message.ends_with(" during operation 1"), "{message}");

    // Run 3: resumed to the end.
    engine.resume(NAME, TESTER).await.unwrap();
    let done = settled(&engine).await;
    assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
    stop_watching.send(()).unwrap();
    let holders = watcher.await.unwrap();
    assert_eq!(holders.len(), 3, "one runner per run, never two: {holders:?}");
    assert_eq!(&holders[..2], [first, second]);
    let claims: usize = processes.iter().map(|process| process.messages("claimed")).sum();
    assert_eq!(claims, 3, "three requests, each claimed once");
    let actions: Vec<String> = engine
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.migration_name.as_deref() == Some(NAME))
        .map(|entry| entry.action)
        .collect();
    assert_eq!(actions, ["resume", "stop", "resume", "stop", "start"]);
    group.assert_migrated(&engine).await;
    println!(
        "two serve + one worker: 3 runs, 3 claims, one runner at a time ({}); a stop through the engine reached {} in {}, \
         `amigo migrations stop` reached {} in {} (the command's own start included)",
        holders.iter().map(|holder| names[holder_process(&processes, holder)].as_str()).collect::<Vec<_>>().join(", then "),
        names[first_process],
        seconds(first_stop),
        names[second_process],
        seconds(second_stop)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_killed_mid_copy_errors_clearly_and_rollback_or_resume_leaves_the_data_whole() {
    let group = Group::start().await;
    for auto_rollback in [true, false] {
        let engine = group.case(Duration::from_secs(10)).await;
        engine.update_setting("disable_auto_rollback", &json!(!auto_rollback), TESTER).await.unwrap();
        let worker = Amigo::worker(engine.config());
        worker.wait_for_message("runner started").await;
        engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
        copying(&engine, 2).await;
        let killed = Instant::now();
        group.services.kill_clickhouse().await;
        // Errored; with auto-rollback, the rollback under way and waiting for ClickHouse to accept connections.
        let errored = wait_for(&engine, NAME, Duration::from_secs(60), "errored", |overview| {
            let record = &overview.record;
            if auto_rollback {
                record.status == Status::Errored && record.waiting_reason.as_deref() == Some(WAITING_FOR_CLICKHOUSE)
            } else {
                is_settled(overview)
            }
        })
        .await;
        let to_errored = killed.elapsed();
        group.services.start_clickhouse().await;
        let restarted = Instant::now();
        let restart = restarted - killed;

        assert_eq!(errored.record.status, Status::Errored);
        assert_eq!(errored.record.rolling_back, auto_rollback);
        let messages = error_messages(&engine).await;
        assert!(messages[0].starts_with("operation 1 failed: ClickHouse error: network error"), "{messages:?}");
        // The copy never writes to events: it is whole before anything is done about the failure.
        assert_eq!(events_partition_checksums(engine.clickhouse(), "events").await.unwrap(), group.original);
        let (recovery, outcome) = if auto_rollback {
            // The rollback began at once, waited for ClickHouse, and went on by itself once it was back.
            let done = settled(&engine).await;
            assert_eq!(done.record.status, Status::RolledBack, "{:?}", error_messages(&engine).await);
            assert_eq!(error_messages(&engine).await, messages, "the wait was no error");
            assert_eq!(messages.len(), 1, "{messages:?}");
            group.assert_original(&engine).await;
            (restarted.elapsed(), "the waiting rollback went on: rolled back")
        } else {
            assert_eq!(messages.len(), 1, "{messages:?}");
            engine.resume(NAME, TESTER).await.unwrap();
            let done = settled(&engine).await;
            assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
            group.assert_migrated(&engine).await;
            (restarted.elapsed(), "resume requested after the restart: completed")
        };
        println!(
            "ClickHouse SIGKILL mid-copy, auto-rollback {}: errored {} after the kill with {:?}; ClickHouse back {} after the kill; {outcome} {} after it was back",
            if auto_rollback { "on" } else { "off" },
            seconds(to_errored),
            messages[0],
            seconds(restart),
            seconds(recovery)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_paused_past_the_health_check_interval_errors_cleanly_and_resume_or_rollback_works_after() {
    let group = Group::start().await;
    for auto_rollback in [false, true] {
        let engine = group.case(Duration::from_secs(10)).await;
        engine.update_setting("disable_auto_rollback", &json!(!auto_rollback), TESTER).await.unwrap();
        engine.update_setting("health_check_interval_seconds", &json!(1), TESTER).await.unwrap();
        let worker = Amigo::worker(engine.config());
        worker.wait_for_message("runner started").await;
        engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
        copying(&engine, 2).await;
        group.services.pause_clickhouse().await;
        let paused = Instant::now();
        // Errored, and with auto-rollback the rollback under way (its first statement waits for ClickHouse).
        let errored = wait_for(&engine, NAME, Duration::from_secs(60), "errored", |overview| {
            overview.record.status == Status::Errored && (overview.record.rolling_back || is_settled(overview))
        })
        .await;
        let to_errored = paused.elapsed();
        let messages = error_messages(&engine).await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with(
                "health check failed during operation 1: the health check did not answer within 1 s; its query could not be killed: "
            ),
            "{messages:?}"
        );
        assert_eq!(errored.record.rolling_back, auto_rollback);
        group.services.resume_clickhouse().await;
        let resumed = Instant::now();
        let outcome = if auto_rollback {
            let done = settled(&engine).await;
            assert_eq!(done.record.status, Status::RolledBack, "{:?}", error_messages(&engine).await);
            group.assert_original(&engine).await;
            "the waiting rollback finished: rolled back"
        } else {
            engine.resume(NAME, TESTER).await.unwrap();
            let done = settled(&engine).await;
            assert_eq!(done.record.status, Status::Completed, "{:?}", error_messages(&engine).await);
            group.assert_migrated(&engine).await;
            "resume requested: completed"
        };
        println!(
            "ClickHouse SIGSTOP mid-copy, auto-rollback {}, health check every 1 s: errored {} after the pause; after SIGCONT, {outcome} in {}",
            if auto_rollback { "on" } else { "off" },
            seconds(to_errored),
            seconds(resumed.elapsed())
        );
    }
}

/// Holds the runtime settings locked, so that a runner's read of them (as each operation begins) waits, until
/// the test cuts that read's connection.
struct SettingsReadBlock {
    connection: sqlx::PgConnection,
}

impl SettingsReadBlock {
    async fn install(engine: &Engine) -> SettingsReadBlock {
        let mut connection = sqlx::PgConnection::connect(&engine.config().database_url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE runtime_setting IN ACCESS EXCLUSIVE MODE").execute(&mut connection).await.unwrap();
        SettingsReadBlock { connection }
    }

    /// Waits until a read of the settings waits for the lock, then ends its connection (as a restarting
    /// Postgres does: `terminating connection due to administrator command`).
    async fn cut_the_waiting_read(mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiting = "SELECT pg_locks.pid FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation
                       WHERE pg_class.relname = 'runtime_setting' AND NOT pg_locks.granted";
        loop {
            let readers: Vec<i32> = sqlx::query_scalar(waiting).fetch_all(&mut self.connection).await.unwrap();
            if let Some(reader) = readers.first() {
                sqlx::query("SELECT pg_terminate_backend($1)").bind(reader).execute(&mut self.connection).await.unwrap();
                return;
            }
            assert!(Instant::now() < deadline, "no one read the settings");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_the_runner_goes_on_and_records_everything_once() {
    let group = Group::start().await;
    // Mid-operation (the copy: writes are retried), then while a read of the settings waits (the throttle's,
    // between partitions, or the one an operation begins with: reads are retried too).
    for at_operation_start in [false, true] {
        let engine = group.case(Duration::from_secs(10)).await;
        let worker = Amigo::worker(engine.config());
        worker.wait_for_message("runner started").await;
        engine.start(NAME, TESTER, json!({ "max_threads": 1 }).as_object().unwrap()).await.unwrap();
        let before = copying(&engine, 2).await.record;
        if at_operation_start {
            SettingsReadBlock::install(&engine).await.cut_the_waiting_read().await;
        }
        let down = Duration::from_secs(3);
        let restart_began = Instant::now();
        group.services.restart_postgres(down).await;
        let back = Instant::now();
        let moved_on = wait_for(&engine, NAME, Duration::from_secs(60), "moving on", |overview| {
            let record = &overview.record;
            (record.current_operation_index == 1 && record.checkpoint != before.checkpoint)
                || record.current_operation_index > 2
                || is_settled(overview)
        })
        .await;
        let to_moved_on = back.elapsed();
        let done = settled(&engine).await;
        let to_completed = back.elapsed();
        assert_eq!(done.record.status, Status::Completed, "{:?} {moved_on:?}", error_messages(&engine).await);
        assert_eq!(error_messages(&engine).await, Vec::<String>::new(), "nothing went wrong, so nothing is recorded");
        let actions: Vec<String> = engine
            .audit_log(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|entry| entry.migration_name.as_deref() == Some(NAME))
            .map(|entry| entry.action)
            .collect();
        assert_eq!(actions, ["start"]);
        assert_eq!(worker.messages("claimed"), 1);
        group.assert_migrated(&engine).await;
        println!(
            "Postgres stopped for {} {} (restart took {} in all): the run moved on {} after Postgres was back and completed {} after it, no error recorded",
            seconds(down),
            if at_operation_start { "as operation 2 began (its read of the settings waiting)" } else { "mid-copy" },
            seconds(back - restart_began),
            seconds(to_moved_on),
            seconds(to_completed)
        );
    }
}
