//! Turning measurements into the Markdown the benchmark prints: tables, statistics and units.

use std::fmt;
use std::time::Duration;

/// A Markdown table, columns padded so that it reads as well in a terminal as rendered.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|cell| cell.to_string()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(row.len(), self.header.len(), "a row has one cell per column");
        self.rows.push(row);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|column| {
                let cells = std::iter::once(&self.header).chain(&self.rows).map(|row| row[column].chars().count());
                cells.max().unwrap_or(0).max(3)
            })
            .collect();
        let line = |formatter: &mut fmt::Formatter<'_>, cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            writeln!(formatter, "| {} |", padded.join(" | "))
        };
        line(formatter, &self.header)?;
        let rules: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        line(formatter, &rules)?;
        for row in &self.rows {
            line(formatter, row)?;
        }
        Ok(())
    }
}

/// The sample at percentile `percent` by the nearest-rank method (50: the median, 100: the maximum).
pub fn percentile(samples: &[Duration], percent: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "median … / p99 … / max …" of `samples`.
pub fn median_p99_max(samples: &[Duration]) -> String {
    format!(
        "median {} / p99 {} / max {}",
        duration(percentile(samples, 50.0)),
        duration(percentile(samples, 99.0)),
        duration(percentile(samples, 100.0))
    )
}

/// A duration in the unit that keeps it readable: µs, ms or s.
pub fn duration(value: Duration) -> String {
    let seconds = value.as_secs_f64();
    if seconds >= 10.0 {
        format!("{seconds:.1} s")
    } else if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 0.001 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.0} µs", seconds * 1e6)
    }
}

/// A row count as people say it: 10 M, 250 k, 999.
pub fn count(value: u64) -> String {
    match value {
        1_000_000.. if value.is_multiple_of(1_000_000) => format!("{} M", value / 1_000_000),
        1_000_000.. => format!("{:.1} M", value as f64 / 1e6),
        1_000.. if value.is_multiple_of(1_000) => format!("{} k", value / 1_000),
        _ => value.to_string(),
    }
}

/// Rows per second of `rows` done in `elapsed`, in millions.
pub fn rows_per_second(rows: u64, elapsed: Duration) -> String {
    format!("{:.2} M rows/s", rows as f64 / elapsed.as_secs_f64() / 1e6)
}

/// `part` as a percentage of `whole`.
pub fn share(part: Duration, whole: Duration) -> String {
    format!("{:.1} %", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(198));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(200));
        assert_eq!(percentile(&samples, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn units_keep_numbers_short() {
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_millis(12)), "12.0 ms");
        assert_eq!(duration(Duration::from_millis(8_120)), "8.12 s");
        assert_eq!(count(10_000_000), "10 M");
        assert_eq!(count(2_500_000), "2.5 M");
        assert_eq!(count(250_000), "250 k");
        assert_eq!(rows_per_second(10_000_000, Duration::from_secs(4)), "2.50 M rows/s");
    }

    #[test]
    fn tables_are_markdown() {
        let mut table = Table::new(&["case", "result"]);
        table.push(vec!["stop".into(), "12 ms".into()]);
        assert_eq!(table.to_string(), "| case | result |\n| ---- | ------ |\n| stop | 12 ms  |\n");
    }
}
