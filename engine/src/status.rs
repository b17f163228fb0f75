//! The state machine of a migration: its statuses, what staff can ask of it, and every legal move.
//!
//! Every status change in the engine goes through [`check_move`] (the runner's moves) or
//! [`Request::check`] (staff's requests); the store then applies it with the old status in its `WHERE`
//! clause, so that of two racing changes exactly one wins.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a migration is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotStarted,
    Starting,
    Running,
    Completed,
    Errored,
    RolledBack,
    FailedAtStartup,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::NotStarted,
        Status::Starting,
        Status::Running,
        Status::Completed,
        Status::Errored,
        Status::RolledBack,
        Status::FailedAtStartup,
    ];

    /// The name stored in Postgres and printed by `list --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "not_started",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Errored => "errored",
            Status::RolledBack => "rolled_back",
            Status::FailedAtStartup => "failed_at_startup",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Starting or running: a runner owns it (or is about to).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Starting | Status::Running)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Status::NotStarted => "not started",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Completed => "completed successfully",
            Status::Errored => "errored",
            Status::RolledBack => "rolled back",
            Status::FailedAtStartup => "failed at startup",
        })
    }
}

/// What a staff user (or auto-start) can ask of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Start,
    Stop,
    StopAndRollback,
    Rollback,
    Resume,
}

impl Request {
    pub const ALL: [Request; 5] = [Request::Start, Request::Stop, Request::StopAndRollback, Request::Rollback, Request::Resume];

    /// The statuses this request may be made in.
    pub fn allowed_from(self) -> &'static [Status] {
        match self {
            Request::Start => &[Status::NotStarted, Status::RolledBack, Status::FailedAtStartup],
            Request::Stop | Request::StopAndRollback => &[Status::Starting, Status::Running],
            Request::Rollback | Request::Resume => &[Status::Errored],
        }
    }

    /// Refuses the request unless the migration's status allows it and no rollback is under way (a rollback
    /// is never interrupted: stopping it halfway would leave both the old and the new state partly there).
    pub fn check(self, migration: &str, status: Status, rolling_back: bool) -> Result<(), IllegalRequest> {
        if !rolling_back && self.allowed_from().contains(&status) {
            Ok(())
        } else {
            Err(IllegalRequest { request: self, migration: migration.to_string(), status, rolling_back })
        }
    }

    /// The verb as staff read it.
    pub fn verb(self) -> &'static str {
        match self {
            Request::Start => "start",
            Request::Stop => "stop",
            Request::StopAndRollback => "stop and roll back",
            Request::Rollback => "roll back",
            Request::Resume => "resume",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Request::Start => "start",
            Request::Stop => "stop",
            Request::StopAndRollback => "stop_and_rollback",
            Request::Rollback => "rollback",
            Request::Resume => "resume",
        }
    }
}

/// A request the migration's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IllegalRequest {
    pub request: Request,
    pub migration: String,
    pub status: Status,
    pub rolling_back: bool,
}

impl fmt::Display for IllegalRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IllegalRequest { request, migration, status, rolling_back } = self;
        if *rolling_back {
            return write!(formatter, "cannot {} {migration}: it is being rolled back; wait until the rollback ends", request.verb());
        }
        let allowed: Vec<String> = request.allowed_from().iter().map(Status::to_string).collect();
        write!(
            formatter,
            "cannot {} {migration}: it is {status}, and {} needs it to be {}",
            request.verb(),
            request.verb(),
            allowed.join(" or ")
        )
    }
}

/// Whether the runner may move a migration from `from` to `to`.
pub fn is_legal_move(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (NotStarted, Starting)
            | (NotStarted, Completed) // not required on this instance
            | (RolledBack, Starting)
            | (FailedAtStartup, Starting)
            | (Errored, Starting) // resume
            | (Starting, Running)
            | (Starting, FailedAtStartup)
            | (Starting, Errored) // stopped or runner died before it ran
            | (Running, Completed)
            | (Running, Errored)
            | (Errored, RolledBack)
    )
}

/// Refuses a move that is not in the table above.
pub fn check_move(migration: &str, from: Status, to: Status) -> Result<(), IllegalMove> {
    if is_legal_move(from, to) {
        Ok(())
    } else {
        Err(IllegalMove { migration: migration.to_string(), from, to })
    }
}

/// A status change the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{migration} cannot go from {from} to {to}")]
pub struct IllegalMove {
    pub migration: String,
    pub from: Status,
    pub to: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn every_request_is_refused_outside_its_statuses() {
        for request in Request::ALL {
            for status in Status::ALL {
                let outcome = request.check("0001_x", status, false);
                assert_eq!(outcome.is_ok(), request.allowed_from().contains(&status), "{request:?} from {status:?}");
            }
        }
    }

    #[test]
    fn a_rollback_in_progress_refuses_every_request() {
        for request in Request::ALL {
            for status in Status::ALL {
                let refusal = request.check("0001_x", status, true).unwrap_err();
                assert!(refusal.to_string().contains("is being rolled back"), "{refusal}");
            }
        }
    }

    #[test]
    fn refusals_name_the_migration_its_status_and_what_is_needed() {
        let refusal = Request::Rollback.check("0001_orders_sort_key", Status::NotStarted, false).unwrap_err();
        assert_eq!(refusal.to_string(), "cannot roll back 0001_orders_sort_key: it is not started, and roll back needs it to be errored");
    }

    #[test]
    fn the_move_table_has_exactly_the_documented_moves() {
        let legal: usize = Status::ALL
            .iter()
            .flat_map(|from| Status::ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| is_legal_move(*from, *to))
            .count();
        assert_eq!(legal, 11);
        assert!(check_move("m", Status::Completed, Status::Starting).is_err());
        assert!(check_move("m", Status::NotStarted, Status::Running).is_err());
        assert!(check_move("m", Status::RolledBack, Status::Errored).is_err());
        assert!(check_move("m", Status::Errored, Status::RolledBack).is_ok());
    }
}
