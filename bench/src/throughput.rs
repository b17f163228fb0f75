//! Throughput: 0001_events_sort_key run by the engine (start, then a runner until completed) against the
//! same copy as a raw clickhouse-client script, on the same seeded events; where the engine's time and the
//! server's CPU go, and what the run wrote to Postgres (the metadata cost).
//!
//! Both sides copy the same database: after each copy the original table is renamed back into place and the
//! copy dropped. Rounds alternate which side goes first. Other processes on the machine only ever add time,
//! so the headline figures are each side's best run, with the medians next to them; the CPU the ClickHouse
//! server and everything else used during each copy shows how much there was to add.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use demo::migrations::events_sort_key::NAME;
use demo::seed;
use engine::clickhouse::{quote_identifier, ClickHouse};
use engine::status::Status;
use engine::tables::partition_row_counts;
use engine::Engine;

use crate::changes::{follow_until, is_settled};
use crate::cpu::{CpuClock, CpuTimes};
use crate::databases::Databases;
use crate::error::{Error, Result};
use crate::fixture::{self, wait_for_merges, ACTOR};
use crate::postgres_activity::{PostgresActivity, SETTLE};
use crate::raw_copy;
use crate::report::{self, Table};

/// Where 0001_events_sort_key keeps the original table after the swap.
const AMIGO_BACKUP_TABLE: &str = "events_0001_backup";

/// The figures for one size.
pub struct Throughput {
    pub events: u64,
    pub partitions: usize,
    /// The sequential script's runs.
    pub raw: Vec<RawRun>,
    /// The script's runs on as many streams as amigo copies with.
    pub parallel_raw: Vec<RawRun>,
    /// amigo's parallelism: one stream per core.
    pub streams: usize,
    pub amigo: Vec<AmigoRun>,
    /// The 1-minute load average before each copy.
    pub loads_before: Vec<f64>,
}

/// One run of the raw script.
pub struct RawRun {
    pub elapsed: Duration,
    /// ClickHouse's own timing of the script's `INSERT`s.
    pub inserts: Duration,
    pub cpu: CpuTimes,
}

/// One run of 0001_events_sort_key through the engine.
pub struct AmigoRun {
    /// From the start request to the completed record arriving on the change stream.
    pub elapsed: Duration,
    pub cpu: CpuTimes,
    /// The time before the first operation (claim, startup checks), then each operation's.
    pub phases: Vec<Phase>,
    /// What the run wrote to Postgres.
    pub postgres: PostgresActivity,
}

pub struct Phase {
    pub name: String,
    pub elapsed: Duration,
    pub server_cpu: Duration,
}

#[derive(Clone, Copy)]
enum Side {
    Amigo,
    /// The script, on this many streams.
    Raw(usize),
}

/// Seeds `events` events in a fresh database and copies them `rounds` times each way.
pub async fn measure(databases: &Databases, cpu: &CpuClock, events: u64, rounds: usize, tcp_port: u16) -> Result<Throughput> {
    let config = databases.fresh().await?;
    let engine = fixture::connect(&config).await?;
    let outcome = copy_both_ways(databases, &engine, cpu, events, rounds, tcp_port).await;
    fixture::disconnect(&engine).await;
    outcome
}

async fn copy_both_ways(
    databases: &Databases,
    engine: &Engine,
    cpu: &CpuClock,
    events: u64,
    rounds: usize,
    tcp_port: u16,
) -> Result<Throughput> {
    let clickhouse = engine.clickhouse().clone();
    eprintln!("throughput: seeding {} events", report::count(events));
    let seeded = seed(&clickhouse, &fixture::seed_request(events)).await?;
    eprintln!("throughput: {seeded}");
    let original = partition_row_counts(&clickhouse, "events").await?;
    let original_definition = table_definition(&clickhouse, "events").await?;
    let partition_ids: Vec<String> = original.iter().map(|(partition_id, _)| partition_id.clone()).collect();
    let streams = crate::machine::cores().min(16);
    // Generous: a copy on a busy two-core machine runs at 100 k rows/s or better.
    let limit = Duration::from_secs(120 + events / 100_000);
    wait_for_merges(&clickhouse).await?;

    let (mut raw, mut parallel_raw, mut amigo, mut loads_before) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut copy_definitions = BTreeSet::new();
    for round in 1..=rounds {
        let mut order = [Side::Amigo, Side::Raw(1), Side::Raw(streams)];
        order.rotate_left(round % 3);
        for side in order {
            loads_before.push(crate::machine::load_average_1_minute());
            let backup_table = match side {
                Side::Raw(on) => {
                    let before = cpu.now()?;
                    let copy = raw_copy::run(clickhouse.database(), &partition_ids, on, tcp_port).await?;
                    let run = RawRun { elapsed: copy.elapsed, inserts: copy.inserts, cpu: cpu.now()? - before };
                    eprintln!("throughput: round {round} of {rounds}, raw script on {on} stream(s): {}", run.describe());
                    if on == 1 {
                        raw.push(run)
                    } else {
                        parallel_raw.push(run)
                    }
                    raw_copy::BACKUP_TABLE
                }
                Side::Amigo => {
                    // Each run needs a migration that was never started: a fresh engine state after the first.
                    let run_engine = if amigo.is_empty() {
                        engine.clone()
                    } else {
                        fixture::connect(&databases.fresh_postgres(engine.config()).await?).await?
                    };
                    let run = run_amigo(&run_engine, cpu, limit).await;
                    fixture::disconnect(&run_engine).await;
                    let run = run?;
                    eprintln!("throughput: round {round} of {rounds}, amigo: {}", run.describe());
                    amigo.push(run);
                    AMIGO_BACKUP_TABLE
                }
            };
            for table in ["events", backup_table] {
                if partition_row_counts(&clickhouse, table).await? != original {
                    return Err(Error::Unexpected(format!("after a copy, {table} does not hold the seeded rows")));
                }
            }
            copy_definitions.insert(table_definition(&clickhouse, "events").await?);
            restore_original(&clickhouse, backup_table).await?;
            wait_for_merges(&clickhouse).await?;
        }
    }
    if copy_definitions.len() != 1 || copy_definitions.contains(&original_definition) {
        return Err(Error::Unexpected(format!(
            "the raw script and amigo must produce the same new table, and they produced: {copy_definitions:?}"
        )));
    }
    Ok(Throughput { events, partitions: original.len(), raw, parallel_raw, streams, amigo, loads_before })
}

/// Starts 0001 with its defaults and runs a runner until it completes, sampling Postgres's counters before
/// and after (each after [`SETTLE`] without activity, so the counters are published) and the CPU times at
/// each operation's start.
async fn run_amigo(engine: &Engine, cpu: &CpuClock, limit: Duration) -> Result<AmigoRun> {
    let definition = engine.definition(NAME).expect("the benchmark's engine knows 0001").clone();
    tokio::time::sleep(SETTLE).await;
    let postgres_before = PostgresActivity::sample(&engine.config().database_url).await?;

    let mut changes = engine.subscribe().await;
    let runner = engine::testing::spawn_runner(engine);
    let requested = (Instant::now(), cpu.now()?);
    engine.start(NAME, ACTOR, &serde_json::Map::new()).await?;
    let mut operation_starts = vec![None; definition.operations.len()];
    let mut cpu_error = None;
    let finished = follow_until(engine, &mut changes, NAME, limit, |record| {
        if record.status == Status::Running {
            if let Some(start @ None) = operation_starts.get_mut(record.current_operation_index as usize) {
                match cpu.now() {
                    Ok(times) => *start = Some((Instant::now(), times)),
                    Err(error) => cpu_error = Some(error),
                }
            }
        }
        is_settled(record)
    })
    .await?;
    let finished_at = (Instant::now(), cpu.now()?);
    let _ = runner.send(true);
    if let Some(error) = cpu_error {
        return Err(error);
    }
    if finished.status != Status::Completed {
        let errors: Vec<String> = engine.errors(NAME).await?.into_iter().map(|error| error.message).collect();
        return Err(Error::Unexpected(format!("{NAME} ended {} instead of completing: {}", finished.status, errors.join("; "))));
    }

    // An operation shorter than a notification's round trip may never be seen: it then starts (and ends)
    // when the next one starts.
    let mut boundaries = vec![requested];
    for index in 0..definition.operations.len() {
        let next_seen = operation_starts[index..].iter().flatten().min_by_key(|(instant, _)| *instant).copied();
        boundaries.push(next_seen.unwrap_or(finished_at));
    }
    boundaries.push(finished_at);
    let names = std::iter::once("claim and startup checks".to_string())
        .chain(definition.operations.iter().enumerate().map(|(index, operation)| format!("op {index}: {}", operation.description)));
    let phases = names
        .zip(boundaries.windows(2))
        .map(|(name, span)| Phase { name, elapsed: span[1].0 - span[0].0, server_cpu: (span[1].1 - span[0].1).server })
        .collect();

    tokio::time::sleep(SETTLE).await;
    let postgres_after = PostgresActivity::sample(&engine.config().database_url).await?;
    Ok(AmigoRun {
        elapsed: finished_at.0 - requested.0,
        cpu: finished_at.1 - requested.1,
        phases,
        postgres: postgres_after.since(&postgres_before),
    })
}

/// Puts the original table back as `events` and drops the copy.
async fn restore_original(clickhouse: &ClickHouse, backup_table: &str) -> Result<()> {
    let table = |name: &str| format!("{}.{}", quote_identifier(clickhouse.database()), quote_identifier(name));
    clickhouse.client().query(&format!("DROP TABLE {}", table("events"))).execute().await?;
    clickhouse.client().query(&format!("RENAME TABLE {} TO {}", table(backup_table), table("events"))).execute().await?;
    Ok(())
}

/// The table's engine with its partition, sort and sample keys.
async fn table_definition(clickhouse: &ClickHouse, table: &str) -> Result<String> {
    Ok(clickhouse
        .client()
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(clickhouse.database())
        .bind(table)
        .fetch_one()
        .await?)
}

impl RawRun {
    fn describe(&self) -> String {
        format!("{} wall, ClickHouse CPU {}", report::duration(self.elapsed), report::duration(self.cpu.server))
    }
}

impl AmigoRun {
    fn describe(&self) -> String {
        format!("{} wall, ClickHouse CPU {}", report::duration(self.elapsed), report::duration(self.cpu.server))
    }
}

impl Throughput {
    /// The run with the shortest wall time: other processes only ever add time, so the best of several runs is
    /// the closest to the copy's own cost.
    fn best(runs: &[RawRun]) -> &RawRun {
        runs.iter().min_by_key(|run| run.elapsed).expect("at least one round")
    }

    fn best_amigo(&self) -> &AmigoRun {
        self.amigo.iter().min_by_key(|run| run.elapsed).expect("at least one round")
    }

    /// Adds this size's rows to the summary table.
    pub fn summarize(&self, summary: &mut Table) {
        let case = format!("throughput, {} events in {} partitions", report::count(self.events), self.partitions);
        let rounds = self.raw.len();
        let (raw, parallel_raw, amigo) = (Self::best(&self.raw), Self::best(&self.parallel_raw), self.best_amigo());
        let raw_median = median(self.raw.iter().map(|run| run.elapsed));
        let parallel_median = median(self.parallel_raw.iter().map(|run| run.elapsed));
        let amigo_median = median(self.amigo.iter().map(|run| run.elapsed));
        let side = |best: Duration, median: Duration, cpu: Duration| {
            format!(
                "{} ({} wall, ClickHouse CPU {}); median of {rounds}: {}",
                report::rows_per_second(self.events, best),
                report::duration(best),
                report::duration(cpu),
                report::rows_per_second(self.events, median)
            )
        };
        let streams = self.streams;
        summary.push(vec![
            case.clone(),
            "raw clickhouse-client script, one partition after another, best run".into(),
            side(raw.elapsed, raw_median, raw.cpu.server),
            String::new(),
        ]);
        summary.push(vec![
            case.clone(),
            format!("raw script on {streams} streams at once (the machine's limit), best run"),
            side(parallel_raw.elapsed, parallel_median, parallel_raw.cpu.server),
            String::new(),
        ]);
        summary.push(vec![
            case.clone(),
            format!("amigo (parallelism {streams}), start to completed, best run"),
            side(amigo.elapsed, amigo_median, amigo.cpu.server),
            String::new(),
        ]);
        let ratio = |target: f64, against: Duration, against_median: Duration| {
            let ratio = against.as_secs_f64() / amigo.elapsed.as_secs_f64();
            format!(
                "{ratio:.2} ({}); medians: {:.2}",
                if ratio >= target { "met" } else { "missed" },
                against_median.as_secs_f64() / amigo_median.as_secs_f64()
            )
        };
        summary.push(vec![
            case.clone(),
            "amigo rows/s ÷ sequential script rows/s, best runs".into(),
            ratio(1.5, raw.elapsed, raw_median),
            "≥ 1.5".into(),
        ]);
        summary.push(vec![
            case.clone(),
            format!("amigo rows/s ÷ {streams}-stream script rows/s, best runs"),
            ratio(0.95, parallel_raw.elapsed, parallel_median),
            "≥ 0.95".into(),
        ]);
        let all_runs = || {
            self.raw
                .iter()
                .chain(&self.parallel_raw)
                .map(|run| (run.elapsed, run.cpu))
                .chain(self.amigo.iter().map(|run| (run.elapsed, run.cpu)))
        };
        let others = median(all_runs().map(|(_, cpu)| cpu.others()));
        let wall = median(all_runs().map(|(elapsed, _)| elapsed));
        let others_cores = others.as_secs_f64() / wall.as_secs_f64();
        let (least, most) = self.loads_before.iter().fold((f64::MAX, 0.0_f64), |(least, most), &load| (least.min(load), most.max(load)));
        summary.push(vec![
            case.clone(),
            "load: CPU other processes used during a copy (median), 1-minute load average before each".into(),
            format!(
                "{} in {} wall: {others_cores:.2} of the {} cores; load average {least:.2} to {most:.2}: {}",
                report::duration(others),
                report::duration(wall),
                crate::machine::cores(),
                if others_cores > 0.2 { "a busy machine, the figures are slower than its own" } else { "a quiet machine" }
            ),
            String::new(),
        ]);

        let seconds: f64 = self.amigo.iter().map(|run| run.elapsed.as_secs_f64()).sum();
        let mut total = PostgresActivity::default();
        for run in &self.amigo {
            total = total.plus(&run.postgres);
        }
        summary.push(vec![
            format!(
                "metadata cost, amigo on {} events ({} run{})",
                report::count(self.events),
                self.amigo.len(),
                if self.amigo.len() == 1 { "" } else { "s" }
            ),
            "Postgres row writes/s (transactions/s, reads included)".into(),
            format!(
                "{:.1} ({:.1}): {} row writes in {seconds:.1} s: {}",
                total.row_writes() as f64 / seconds,
                total.transactions as f64 / seconds,
                total.row_writes(),
                total.by_table()
            ),
            "bounded".into(),
        ]);
    }

    /// Where the best amigo run's time and ClickHouse's CPU went, phase by phase, next to the best raw run.
    pub fn phases(&self) -> Table {
        let (raw, parallel_raw, amigo) = (Self::best(&self.raw), Self::best(&self.parallel_raw), self.best_amigo());
        let mut table = Table::new(&["phase", "wall", "share of amigo's wall", "ClickHouse CPU"]);
        for phase in &amigo.phases {
            table.push(vec![
                phase.name.clone(),
                report::duration(phase.elapsed),
                report::share(phase.elapsed, amigo.elapsed),
                report::duration(phase.server_cpu),
            ]);
        }
        table.push(vec![
            "amigo, start to completed".into(),
            report::duration(amigo.elapsed),
            "100 %".into(),
            report::duration(amigo.cpu.server),
        ]);
        table.push(vec![
            "raw sequential script, whole".into(),
            report::duration(raw.elapsed),
            report::share(raw.elapsed, amigo.elapsed),
            report::duration(raw.cpu.server),
        ]);
        table.push(vec![
            format!("raw script on {} streams, whole", self.streams),
            report::duration(parallel_raw.elapsed),
            report::share(parallel_raw.elapsed, amigo.elapsed),
            report::duration(parallel_raw.cpu.server),
        ]);
        table.push(vec![
            "raw sequential script, its INSERTs (clickhouse-client --time)".into(),
            report::duration(raw.inserts),
            report::share(raw.inserts, amigo.elapsed),
            String::new(),
        ]);
        table
    }
}

fn median(durations: impl Iterator<Item = Duration>) -> Duration {
    report::percentile(&durations.collect::<Vec<_>>(), 50.0)
}
