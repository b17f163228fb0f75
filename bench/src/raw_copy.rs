//! The raw baselines: the copy 0001_events_sort_key makes, written by hand as clickhouse-client scripts (create
//! the new table with the same keys, one `INSERT ... SELECT` per partition, one `RENAME`), on one stream (one
//! partition after another) or on several at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use engine::clickhouse::quote_identifier;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Where the script copies `events` to, and the name the original gets after the swap.
pub const NEW_TABLE: &str = "events_raw_copy";
pub const BACKUP_TABLE: &str = "events_raw_backup";

/// The keys 0001_events_sort_key gives `events` (the benchmark checks that both copies end with the same
/// table definition).
const SORTING_KEY: &str = "team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid";
const SAMPLING_KEY: &str = "cityHash64(distinct_id)";

/// How long the copy took, and how long ClickHouse says its `INSERT`s took (`clickhouse-client --time`, summed
/// over the streams).
pub struct RawCopy {
    pub elapsed: Duration,
    pub inserts: Duration,
}

/// The copy for `database`, whose `events` has the partitions `partition_ids` (`toYYYYMM(timestamp)`), on
/// `streams` clickhouse-client processes at once: the `CREATE` first, then each stream's `INSERT`s (the
/// partitions dealt out in turn), the `RENAME` once all have finished. One stream is the sequential script.
pub async fn run(database: &str, partition_ids: &[String], streams: usize, tcp_port: u16) -> Result<RawCopy> {
    let table = |name: &str| format!("{}.{}", quote_identifier(database), quote_identifier(name));
    let (events, new_table, backup) = (table("events"), table(NEW_TABLE), table(BACKUP_TABLE));
    let started = Instant::now();
    run_script(
        &format!(
            "CREATE TABLE {new_table} AS {events} ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) \
             ORDER BY ({SORTING_KEY}) SAMPLE BY {SAMPLING_KEY};\n"
        ),
        tcp_port,
    )
    .await?;
    let scripts: Vec<String> = (0..streams.max(1))
        .map(|stream| {
            partition_ids
                .iter()
                .skip(stream)
                .step_by(streams.max(1))
                .map(|partition_id| format!("INSERT INTO {new_table} SELECT * FROM {events} WHERE toYYYYMM(timestamp) = {partition_id};\n"))
                .collect()
        })
        .collect();
    let timings =
        futures::future::try_join_all(scripts.iter().filter(|script| !script.is_empty()).map(|script| run_script(script, tcp_port)))
            .await?;
    run_script(&format!("RENAME TABLE {events} TO {backup}, {new_table} TO {events};\n"), tcp_port).await?;
    Ok(RawCopy { elapsed: started.elapsed(), inserts: timings.into_iter().flatten().sum() })
}

/// Runs `script` through `clickhouse-client --multiquery --time` on the local server's native port, and returns
/// each statement's time as the server measured it.
async fn run_script(script: &str, tcp_port: u16) -> Result<Vec<Duration>> {
    let failed = |message: String| Error::Command { command: "clickhouse-client".into(), message };
    let mut client = tokio::process::Command::new("clickhouse-client")
        .args(["--host", "127.0.0.1", "--port", &tcp_port.to_string(), "--multiquery", "--time"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("{error}; is clickhouse-client installed (scripts/setup)?")))?;
    let mut stdin = client.stdin.take().expect("stdin is piped");
    stdin.write_all(script.as_bytes()).await.map_err(|error| failed(error.to_string()))?;
    drop(stdin);
    let output = client.wait_with_output().await.map_err(|error| failed(error.to_string()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(failed(stderr.trim().to_string()));
    }
    let timings: Vec<Duration> = stderr.lines().filter_map(|line| line.trim().parse().ok()).map(Duration::from_secs_f64).collect();
    let statements = script.lines().filter(|line| !line.trim().is_empty()).count();
    if timings.len() != statements {
        return Err(failed(format!("expected {statements} timings from --time, got: {}", stderr.trim())));
    }
    Ok(timings)
}
