//! CPU time from `/proc`: the ClickHouse server's (all its threads) and the whole machine's busy time. The
//! server's is the work a copy costs whatever else runs; the machine's, less the server's, is how much other
//! processes competed for the cores meanwhile.

use std::ops::Sub;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Reads the CPU times of one ClickHouse server process.
pub struct CpuClock {
    server_stat: PathBuf,
    ticks_per_second: f64,
}

/// CPU time used since boot (or between two samples).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// By the ClickHouse server.
    pub server: Duration,
    /// By every process, the server included.
    pub machine: Duration,
}

impl CpuTimes {
    /// By every process but the ClickHouse server.
    pub fn others(&self) -> Duration {
        self.machine.saturating_sub(self.server)
    }
}

impl Sub for CpuTimes {
    type Output = CpuTimes;

    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes { server: self.server.saturating_sub(earlier.server), machine: self.machine.saturating_sub(earlier.machine) }
    }
}

impl CpuClock {
    /// The clock of the server whose pid `pid_file` holds (`scripts/services` writes it under the data folder).
    pub fn for_pid_file(pid_file: &Path) -> Result<CpuClock> {
        let unreadable = |message: String| {
            Error::Unexpected(format!(
                "cannot read the ClickHouse server's pid from {}: {message}; the benchmark measures the local server `scripts/services start` runs",
                pid_file.display()
            ))
        };
        let pid: u32 = std::fs::read_to_string(pid_file)
            .map_err(|error| unreadable(error.to_string()))?
            .trim()
            .parse()
            .map_err(|_| unreadable("not a pid".into()))?;
        let ticks = std::process::Command::new("getconf").arg("CLK_TCK").output();
        let ticks_per_second = ticks.ok().and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok()).unwrap_or(100.0);
        let clock = CpuClock { server_stat: PathBuf::from(format!("/proc/{pid}/stat")), ticks_per_second };
        clock.now()?;
        Ok(clock)
    }

    pub fn now(&self) -> Result<CpuTimes> {
        // /proc/PID/stat: after the command name (which may hold spaces), utime and stime are fields 14 and 15.
        let stat = read(&self.server_stat)?;
        let after_command: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let server_ticks = ticks(&self.server_stat, &after_command, 11)? + ticks(&self.server_stat, &after_command, 12)?;
        // The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal; busy is all but idle and iowait.
        let machine_stat = Path::new("/proc/stat");
        let text = read(machine_stat)?;
        let totals: Vec<&str> = text.lines().next().unwrap_or_default().split_whitespace().collect();
        let mut busy_ticks = 0.0;
        for field in [1, 2, 3, 6, 7, 8] {
            busy_ticks += ticks(machine_stat, &totals, field)?;
        }
        Ok(CpuTimes {
            server: Duration::from_secs_f64(server_ticks / self.ticks_per_second),
            machine: Duration::from_secs_f64(busy_ticks / self.ticks_per_second),
        })
    }
}

/// Field `index` of `fields`, read from `path`, as a number of clock ticks.
fn ticks(path: &Path, fields: &[&str], index: usize) -> Result<f64> {
    fields
        .get(index)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| Error::Unexpected(format!("{} does not have the expected layout", path.display())))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| Error::Unexpected(format!("cannot read {}: {error}", path.display())))
}
