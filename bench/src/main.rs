//! `amigo-bench`: measures amigo against raw ClickHouse on fresh databases and prints the figures as Markdown.
//! `bench/run` builds and runs it; bench/README.md says what each case measures and records the figures.

mod changes;
mod cpu;
mod databases;
mod error;
mod fixture;
mod live_updates;
mod machine;
mod notification_latency;
mod postgres_activity;
mod raw_copy;
mod report;
mod resume_cost;
mod stop_latency;
mod throughput;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::cpu::CpuClock;
use crate::databases::Databases;
use crate::machine::Machine;
use crate::report::Table;

/// The size `--full` adds to `--events`.
const FULL_EVENTS: u64 = 100_000_000;
/// Free disk a seeded event needs during the throughput case (the original, the copy and merges): 30 GB
/// for 100 M events.
const FREE_BYTES_PER_EVENT: u64 = 300;

/// Benchmarks amigo's engine against raw ClickHouse on fresh databases (dropped at the end) and prints the
/// figures as a Markdown table.
#[derive(Parser)]
struct Options {
    /// Sizes of the throughput case in events, comma-separated: each is seeded once and copied --rounds
    /// times each way.
    #[arg(long, value_delimiter = ',', default_value = "10000000")]
    events: Vec<u64>,
    /// Add 100 M events to --events (skipped, with a message, unless the disk has 30 GB free).
    #[arg(long)]
    full: bool,
    /// Copies per side and size; rounds alternate which side copies first, and the best of each side counts.
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    rounds: usize,
    /// Stops the stop-latency case measures.
    #[arg(long, default_value_t = 5, value_parser = at_least_one())]
    stops: usize,
    /// Progress writes the notification case times.
    #[arg(long, default_value_t = 200, value_parser = at_least_one())]
    changes: usize,
    /// SSE clients the live-update case connects to one server at once.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    sse_clients: usize,
    /// The `amigo` binary the live-update case serves the SSE route with (bench/run builds it, release).
    #[arg(long, default_value = "target/release/amigo")]
    amigo: PathBuf,
    /// The cases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "notification,live,stop,resume,throughput")]
    cases: Vec<Case>,
    /// The Postgres server the benchmark creates its databases on (any database of it).
    #[arg(long, env = "AMIGO_DATABASE_URL", default_value = "postgres://amigo@127.0.0.1:55432/amigo")]
    database_url: String,
    /// The ClickHouse server's HTTP interface, which the engine uses.
    #[arg(long, env = "AMIGO_CLICKHOUSE_URL", default_value = "http://127.0.0.1:58123")]
    clickhouse_url: String,
    /// The same server's native TCP port, for clickhouse-client.
    #[arg(long, env = "AMIGO_CH_TCP_PORT", default_value_t = 59000)]
    clickhouse_tcp_port: u16,
    /// The local services' data folder: its filesystem must hold the seeded events and their copies.
    #[arg(long, env = "AMIGO_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Case {
    /// Engine notification latency.
    Notification,
    /// Live-update latency over SSE, one client then many, and the server's memory.
    Live,
    /// Stop latency.
    Stop,
    /// Rows a resume copies again after a stop in the middle of a large partition.
    Resume,
    /// Throughput against the raw script, and the metadata cost of amigo's run.
    Throughput,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let databases = Databases::new(&options.database_url, &options.clickhouse_url);
    let outcome = tokio::select! {
        outcome = run(&options, &databases) => outcome,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted?;
            eprintln!("interrupted: dropping the benchmark's databases");
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    databases.drop_all().await.context("dropping the benchmark's databases (drop what is left of amigo_bench_* by hand)")?;
    print!("{}", outcome?);
    Ok(())
}

/// Runs the chosen cases, dropping each case's databases when it ends, and returns the Markdown report.
async fn run(options: &Options, databases: &Databases) -> anyhow::Result<String> {
    let machine = describe_machine(databases).await;
    databases.drop_all().await?;
    let machine = machine?;
    let load_at_start = machine::load_average();

    let mut summary = Table::new(&["case", "measure", "result", "target"]);
    let mut phase_tables = Vec::new();
    if options.cases.contains(&Case::Notification) {
        let outcome = notification_latency::measure(databases, options.changes).await;
        databases.drop_all().await?;
        outcome.context("engine notification latency")?.summarize(&mut summary);
    }
    if options.cases.contains(&Case::Live) {
        let outcome = live_updates::measure(databases, &options.amigo, options.changes, options.sse_clients).await;
        databases.drop_all().await?;
        outcome.context("live-update latency over SSE")?.summarize(&mut summary);
    }
    if options.cases.contains(&Case::Stop) {
        let outcome = stop_latency::measure(databases, options.stops).await;
        databases.drop_all().await?;
        outcome.context("stop latency")?.summarize(&mut summary);
    }
    if options.cases.contains(&Case::Resume) {
        let outcome = resume_cost::measure(databases).await;
        databases.drop_all().await?;
        outcome.context("resume cost")?.summarize(&mut summary);
    }
    if options.cases.contains(&Case::Throughput) {
        let cpu = CpuClock::for_pid_file(&options.data_dir.join("clickhouse/clickhouse-server.pid"))?;
        let mut sizes = options.events.clone();
        if options.full && !sizes.contains(&FULL_EVENTS) {
            sizes.push(FULL_EVENTS);
        }
        for events in sizes {
            let free = machine::free_disk_bytes(&options.data_dir)?;
            let needed = events * FREE_BYTES_PER_EVENT;
            if free < needed {
                let message = format!(
                    "skipped: {} GB free on {}, needs {} GB",
                    free / 1_000_000_000,
                    options.data_dir.display(),
                    needed / 1_000_000_000
                );
                eprintln!("throughput, {} events: {message}", report::count(events));
                summary.push(vec![format!("throughput, {} events", report::count(events)), String::new(), message, String::new()]);
                continue;
            }
            let outcome = throughput::measure(databases, &cpu, events, options.rounds, options.clickhouse_tcp_port).await;
            databases.drop_all().await?;
            let throughput = outcome.with_context(|| format!("throughput on {events} events"))?;
            throughput.summarize(&mut summary);
            phase_tables.push((events, throughput.phases()));
        }
    }

    let mut markdown = format!(
        "Machine: {machine}; load average (1, 5, 15 min) {load_at_start} at the start, {} at the end.\n\n{summary}",
        machine::load_average()
    );
    for (events, phases) in phase_tables {
        markdown.push_str(&format!(
            "\nWhere amigo's time and ClickHouse's CPU go on {} events (the best runs):\n\n{phases}",
            report::count(events)
        ));
    }
    Ok(markdown)
}

async fn describe_machine(databases: &Databases) -> anyhow::Result<Machine> {
    let engine = fixture::connect(&databases.fresh().await?).await?;
    let machine = Machine::describe(&engine).await;
    fixture::disconnect(&engine).await;
    Ok(machine?)
}
