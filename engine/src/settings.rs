//! Runtime settings stored in Postgres and editable while migrations run: what each one means, its default,
//! and validation of new values.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The settings in force, defaults filled in for what was never saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    /// Start the next required migration by itself, one at a time, in name order.
    pub auto_start: bool,
    /// Leave a failed migration errored instead of rolling it back.
    pub disable_auto_rollback: bool,
    /// How long a rollback may take before it is reported as failed.
    pub rollback_timeout_seconds: u64,
    /// How often a running migration's health check runs.
    pub health_check_interval_seconds: u64,
    /// Share of free disk (in percent) under which a migration's throttle holds it; 0 turns the check off.
    pub min_free_disk_percent: u64,
    /// On a cluster, the replication lag (seconds) over which a migration's throttle holds it; 0 turns the
    /// check off.
    pub max_replica_lag_seconds: u64,
    /// How long a migration ready to cut over waits for staff's Cut over before it fails (resumable); 0 waits
    /// as long as it takes.
    pub cutover_timeout_hours: u64,
    /// Where notifications are posted (JSON, Slack-compatible); empty sends none.
    pub webhook_url: String,
    /// How long a migration waits on pressure before a notification says so; 0 never says.
    pub notify_waiting_minutes: u64,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            auto_start: false,
            disable_auto_rollback: false,
            rollback_timeout_seconds: 1800,
            health_check_interval_seconds: 10,
            min_free_disk_percent: 10,
            max_replica_lag_seconds: 300,
            cutover_timeout_hours: 72,
            webhook_url: String::new(),
            notify_waiting_minutes: 30,
        }
    }
}

/// The type and bounds of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SettingKind {
    Boolean,
    /// A whole number from `min` to `max`, shown with `unit` (`s`, `%`).
    WholeNumber {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// An `http` or `https` address, or empty for none.
    Url,
}

/// A setting as the settings tab and the CLI present it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub kind: SettingKind,
}

/// Every setting, in the order the settings tab shows them (auto-start first).
pub const SETTINGS: [SettingSpec; 9] = [
    SettingSpec {
        key: "auto_start",
        label: "Auto-run migrations",
        description: "Start the next required migration by itself, one at a time, in name order.",
        kind: SettingKind::Boolean,
    },
    SettingSpec {
        key: "disable_auto_rollback",
        label: "Disable auto-rollback",
        description: "When a migration fails, leave it errored for a person to resume or roll back, instead of rolling it back at once.",
        kind: SettingKind::Boolean,
    },
    SettingSpec {
        key: "rollback_timeout_seconds",
        label: "Rollback timeout (seconds)",
        description: "How long a rollback may run before it is reported as failed and the migration stays errored; it also bounds the clean-up of a stopped or failed operation.",
        kind: SettingKind::WholeNumber { min: 1, max: 7 * 24 * 3600, unit: "s" },
    },
    SettingSpec {
        key: "health_check_interval_seconds",
        label: "Health-check interval (seconds)",
        description: "How often a running migration's health check runs; a failing check stops the migration.",
        kind: SettingKind::WholeNumber { min: 1, max: 3600, unit: "s" },
    },
    SettingSpec {
        key: "min_free_disk_percent",
        label: "Minimum free disk (%)",
        description: "A migration that copies or moves data waits while any ClickHouse disk has less free space than this share, and goes on when it is freed; 0 turns the check off.",
        kind: SettingKind::WholeNumber { min: 0, max: 90, unit: "%" },
    },
    SettingSpec {
        key: "max_replica_lag_seconds",
        label: "Maximum replica lag (seconds)",
        description: "On a cluster, a migration that copies or moves data waits while any replica is further behind its shard than this, and goes on once it has caught up; 0 turns the check off.",
        kind: SettingKind::WholeNumber { min: 0, max: 7 * 24 * 3600, unit: "s" },
    },
    SettingSpec {
        key: "cutover_timeout_hours",
        label: "Cut-over wait (hours)",
        description: "How long a migration run with its cut-over on hold waits, ready and still catching up, for someone to click Cut over; then it fails and can be resumed. 0 waits as long as it takes.",
        kind: SettingKind::WholeNumber { min: 0, max: 24 * 365, unit: "h" },
    },
    SettingSpec {
        key: "webhook_url",
        label: "Notification webhook",
        description: "Where amigo posts a JSON message (Slack-compatible: its text is in \"text\") when a migration errors, completes, is ready to cut over or waits too long; retried for about an hour and a half until it is delivered. Empty sends none.",
        kind: SettingKind::Url,
    },
    SettingSpec {
        key: "notify_waiting_minutes",
        label: "Notify after waiting (minutes)",
        description: "How long a migration may wait on pressure (disk, merges, a health check) before the webhook is told; 0 never tells.",
        kind: SettingKind::WholeNumber { min: 0, max: 7 * 24 * 60, unit: "min" },
    },
];

impl RuntimeSettings {
    /// Builds the settings from stored (key, value) rows; unknown or malformed rows are ignored with a warning.
    pub fn from_stored(rows: &[(String, serde_json::Value)]) -> RuntimeSettings {
        let mut settings = RuntimeSettings::default();
        for (key, value) in rows {
            if let Err(error) = settings.apply(key, value) {
                tracing::warn!(%key, %error, "ignoring a stored setting");
            }
        }
        settings
    }

    /// Validates `value` for `key` and applies it.
    pub fn apply(&mut self, key: &str, value: &serde_json::Value) -> Result<()> {
        let spec = SETTINGS.iter().find(|spec| spec.key == key).ok_or_else(|| Error::InvalidSetting {
            key: key.into(),
            reason: format!("no such setting; the settings are {}", SETTINGS.map(|spec| spec.key).join(", ")),
        })?;
        let invalid = |reason: String| Error::InvalidSetting { key: key.into(), reason };
        match spec.kind {
            SettingKind::Boolean => {
                let flag = value.as_bool().ok_or_else(|| invalid(format!("{value} is not true or false")))?;
                *self.flag_mut(key) = flag;
            }
            SettingKind::WholeNumber { min, max, .. } => {
                let number = value.as_u64().ok_or_else(|| invalid(format!("{value} is not a whole number")))?;
                if !(min..=max).contains(&number) {
                    return Err(invalid(format!("{number} is out of range: it must be from {min} to {max}")));
                }
                *self.number_mut(key) = number;
            }
            SettingKind::Url => {
                let text = value.as_str().ok_or_else(|| invalid(format!("{value} is not text")))?.trim();
                if !text.is_empty() {
                    let parsed = url::Url::parse(text).map_err(|error| invalid(format!("{text:?} is not an address: {error}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                        return Err(invalid(format!("{text:?} is not an http:// or https:// address")));
                    }
                }
                self.webhook_url = text.into();
            }
        }
        Ok(())
    }

    /// The field of the boolean setting `key` (one of [`SETTINGS`]).
    fn flag_mut(&mut self, key: &str) -> &mut bool {
        match key {
            "auto_start" => &mut self.auto_start,
            "disable_auto_rollback" => &mut self.disable_auto_rollback,
            _ => unreachable!("{key} is not a boolean setting"),
        }
    }

    /// The field of the whole-number setting `key` (one of [`SETTINGS`]).
    fn number_mut(&mut self, key: &str) -> &mut u64 {
        match key {
            "rollback_timeout_seconds" => &mut self.rollback_timeout_seconds,
            "health_check_interval_seconds" => &mut self.health_check_interval_seconds,
            "min_free_disk_percent" => &mut self.min_free_disk_percent,
            "max_replica_lag_seconds" => &mut self.max_replica_lag_seconds,
            "cutover_timeout_hours" => &mut self.cutover_timeout_hours,
            "notify_waiting_minutes" => &mut self.notify_waiting_minutes,
            _ => unreachable!("{key} is not a whole-number setting"),
        }
    }

    /// The current value of `key` as JSON.
    pub fn value(&self, key: &str) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()?.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_setting_has_a_value_and_accepts_its_own_default() {
        let defaults = RuntimeSettings::default();
        for spec in SETTINGS {
            let value = defaults.value(spec.key).unwrap_or_else(|| panic!("{} has no value", spec.key));
            RuntimeSettings::default().apply(spec.key, &value).unwrap();
        }
        assert_eq!(SETTINGS[0].key, "auto_start");
    }

    #[test]
    fn bad_values_are_refused_and_change_nothing() {
        let mut settings = RuntimeSettings::default();
        assert!(settings.apply("auto_start", &json!("yes")).is_err());
        assert!(settings.apply("rollback_timeout_seconds", &json!(0)).is_err());
        assert!(settings.apply("rollback_timeout_seconds", &json!(-5)).is_err());
        assert!(settings.apply("health_check_interval_seconds", &json!(1.5)).is_err());
        assert!(settings.apply("min_free_disk_percent", &json!(91)).is_err());
        assert!(settings.apply("colour", &json!(true)).is_err());
        assert_eq!(settings, RuntimeSettings::default());
        settings.apply("auto_start", &json!(true)).unwrap();
        settings.apply("health_check_interval_seconds", &json!(2)).unwrap();
        assert!(settings.auto_start);
        assert_eq!(settings.health_check_interval_seconds, 2);
        settings.apply("min_free_disk_percent", &json!(0)).unwrap();
        assert_eq!(settings.min_free_disk_percent, 0);
    }

    #[test]
    fn the_webhook_is_an_http_address_or_empty() {
        let mut settings = RuntimeSettings::default();
        for refused in [json!(5), json!("hooks.slack.com/x"), json!("ftp://example.com/x"), json!("http://"), json!("not an address")] {
            assert!(settings.apply("webhook_url", &refused).is_err(), "{refused} was accepted");
        }
        assert_eq!(settings, RuntimeSettings::default());
        settings.apply("webhook_url", &json!(" https://hooks.slack.com/services/T0/B0/x ")).unwrap();
        assert_eq!(settings.webhook_url, "https://hooks.slack.com/services/T0/B0/x");
        settings.apply("webhook_url", &json!("")).unwrap();
        assert_eq!(settings.webhook_url, "");
    }

    #[test]
    fn stored_rows_override_defaults() {
        let settings = RuntimeSettings::from_stored(&[("disable_auto_rollback".into(), json!(true)), ("bogus".into(), json!(1))]);
        assert!(settings.disable_auto_rollback);
        assert!(!settings.auto_start);
    }
}
