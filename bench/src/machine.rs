//! The machine the figures come from: cores, memory, server versions, free disk and how busy it is.

use std::fmt;
use std::path::Path;

use engine::Engine;

use crate::error::{Error, Result};

/// What the README records next to the figures.
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub clickhouse_version: String,
    pub postgres_version: String,
}

impl Machine {
    pub async fn describe(engine: &Engine) -> Result<Machine> {
        let postgres_version = engine.store().server_version_number().await?;
        Ok(Machine {
            cores: cores(),
            memory_gib: memory_kib().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            clickhouse_version: engine.clickhouse().version().to_string(),
            postgres_version: postgres_version.split_whitespace().next().unwrap_or_default().to_string(),
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} cores, {:.1} GiB memory, ClickHouse {}, Postgres {}",
            self.cores, self.memory_gib, self.clickhouse_version, self.postgres_version
        )
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

/// The 1-, 5- and 15-minute load averages as `/proc/loadavg` gives them: other work on the machine slows
/// every figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The 1-minute load average, or 0 where `/proc/loadavg` cannot be read.
pub fn load_average_1_minute() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|text| text.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

/// Bytes free for unprivileged users on the filesystem holding `path` (`df`).
pub fn free_disk_bytes(path: &Path) -> Result<u64> {
    let failed = |message: String| Error::Command { command: format!("df {}", path.display()), message };
    let output =
        std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().nth(1).and_then(|line| line.trim().parse().ok()).ok_or_else(|| failed(format!("unexpected output {text:?}")))
}

fn memory_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
