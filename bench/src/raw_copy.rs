//! The raw baseline: the copy 0001_events_sort_key makes, written by hand as one clickhouse-client script
//! (create the new table with the same keys, one `INSERT ... SELECT` per partition, one `RENAME`).

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

/// How long the script took, and how long ClickHouse says its `INSERT`s took (`clickhouse-client --time`).
pub struct RawCopy {
    pub elapsed: Duration,
    pub inserts: Duration,
}

/// The script for `database`, whose `events` has the partitions `partition_ids` (`toYYYYMM(timestamp)`).
pub fn script(database: &str, partition_ids: &[String]) -> String {
    let table = |name: &str| format!("{}.{}", quote_identifier(database), quote_identifier(name));
    let (events, new_table, backup) = (table("events"), table(NEW_TABLE), table(BACKUP_TABLE));
    let mut script = format!(
        "CREATE TABLE {new_table} AS {events} ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) \
         ORDER BY ({SORTING_KEY}) SAMPLE BY {SAMPLING_KEY};\n"
    );
    for partition_id in partition_ids {
        script.push_str(&format!("INSERT INTO {new_table} SELECT * FROM {events} WHERE toYYYYMM(timestamp) = {partition_id};\n"));
    }
    script.push_str(&format!("RENAME TABLE {events} TO {backup}, {new_table} TO {events};\n"));
    script
}

/// Runs `script` through `clickhouse-client --multiquery` on the local server's native port.
pub async fn run(script: &str, tcp_port: u16) -> Result<RawCopy> {
    let failed = |message: String| Error::Command { command: "clickhouse-client".into(), message };
    let started = Instant::now();
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
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(failed(stderr.trim().to_string()));
    }
    // One line per statement, in script order: the CREATE, the INSERTs, the RENAME.
    let statement_seconds: Vec<f64> = stderr.lines().filter_map(|line| line.trim().parse().ok()).collect();
    let insert_count = script.lines().filter(|line| line.starts_with("INSERT")).count();
    if statement_seconds.len() != insert_count + 2 {
        return Err(failed(format!("expected {} timings from --time, got: {}", insert_count + 2, stderr.trim())));
    }
    let inserts = Duration::from_secs_f64(statement_seconds[1..=insert_count].iter().sum());
    Ok(RawCopy { elapsed, inserts })
}
