//! The state machine of a migration, in one place for the engine and the browser: the statuses stored, the
//! phases staff see ([`Phase::of`]), the actions allowed in each phase, and every legal move of the runner.
//!
//! Every status change in the engine goes through [`check_move`] (the runner's moves) or [`Action::check`]
//! (staff's requests); the store then applies it with what it checked in its `WHERE` clause, so that of two
//! racing changes exactly one wins. The page and the command line show [`Phase`] and
//! [`Phase::allowed_actions`] as they are: neither derives a state of its own.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a migration is in its life, as stored: the runner's moves between these are [`is_legal_move`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
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

/// What is known of a migration besides its status, from which its [`Phase`] follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub status: Status,
    /// A rollback is under way (the status stays errored until it ends).
    pub rolling_back: bool,
    /// Staff asked to stop it and the runner has not acted on it yet.
    pub stop_requested: bool,
    /// Staff asked to pause it and nobody has asked to continue since.
    pub pause_requested: bool,
    /// The runner holds the run between two units of work, for the pause.
    pub held: bool,
    /// The runner is waiting for a reason of its own (pressure on ClickHouse, inserts in flight).
    pub waiting: bool,
    /// A runner has taken the run up.
    pub claimed: bool,
    /// That runner's heartbeat is older than the lease allows: it died, or cannot reach Postgres.
    pub runner_silent: bool,
    /// The run holds its cut-over for staff: copied and caught up, still copying new inserts.
    pub cutover_ready: bool,
    /// Its run left a backup of what it replaced (a rewrite's original table) that nobody has dropped yet.
    pub backup_kept: bool,
}

impl Observed {
    /// What staff may ask now, in menu order: the phase's actions ([`Phase::allowed_actions`]), and for a
    /// completed migration whose backup is kept, rolling it back (from the backup) or finalizing it (dropping
    /// the backup).
    pub fn allowed_actions(&self) -> Vec<Action> {
        let phase = Phase::of(*self);
        let mut actions = phase.allowed_actions().to_vec();
        if phase == Phase::Completed && self.backup_kept {
            actions.extend([Action::Rollback, Action::Finalize]);
        }
        actions
    }
}

/// What staff see a migration doing: its status, refined by what its runner and staff are doing to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    NotStarted,
    /// Asked to run; no runner has taken it up yet.
    Queued,
    /// A runner took it up and runs its prechecks.
    Starting,
    Running,
    /// Running, but waiting until a reason of the runner's passes (the row says which).
    Waiting,
    /// Asked to pause: the unit of work in progress finishes first (a run paused before it began holds before
    /// its first).
    Pausing,
    /// Held between two units of work, nothing running, the lease kept.
    Paused,
    /// Copied and caught up, still copying what arrives, until staff click Cut over (a run with its cut-over
    /// on hold).
    ReadyToCutOver,
    /// Asked to stop; the runner is stopping it.
    Stopping,
    RollingBack,
    Completed,
    Errored,
    RolledBack,
    FailedAtStartup,
    /// A runner holds it but has stopped heartbeating; until a live runner reaps it, or staff mark it errored,
    /// nothing moves.
    RunnerSilent,
}

impl Phase {
    pub const ALL: [Phase; 15] = [
        Phase::NotStarted,
        Phase::Queued,
        Phase::Starting,
        Phase::Running,
        Phase::Waiting,
        Phase::Pausing,
        Phase::Paused,
        Phase::ReadyToCutOver,
        Phase::Stopping,
        Phase::RollingBack,
        Phase::Completed,
        Phase::Errored,
        Phase::RolledBack,
        Phase::FailedAtStartup,
        Phase::RunnerSilent,
    ];

    /// The phase of a migration in the situation `observed`.
    pub fn of(observed: Observed) -> Phase {
        match observed.status {
            _ if observed.claimed && observed.runner_silent => Phase::RunnerSilent,
            _ if observed.rolling_back => Phase::RollingBack,
            Status::Starting | Status::Running if observed.stop_requested => Phase::Stopping,
            // A run paused before its first unit of work holds there.
            Status::Starting | Status::Running if observed.pause_requested && observed.held => Phase::Paused,
            Status::Starting | Status::Running if observed.pause_requested => Phase::Pausing,
            Status::Starting if !observed.claimed => Phase::Queued,
            Status::Starting => Phase::Starting,
            Status::Running if observed.cutover_ready => Phase::ReadyToCutOver,
            Status::Running if observed.waiting => Phase::Waiting,
            Status::Running => Phase::Running,
            Status::NotStarted => Phase::NotStarted,
            Status::Completed => Phase::Completed,
            Status::Errored => Phase::Errored,
            Status::RolledBack => Phase::RolledBack,
            Status::FailedAtStartup => Phase::FailedAtStartup,
        }
    }

    /// What staff may ask in this phase, in the order a menu shows them.
    pub fn allowed_actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            Phase::NotStarted | Phase::RolledBack | Phase::FailedAtStartup => &[Start],
            Phase::Queued | Phase::Starting | Phase::Running | Phase::Waiting => &[Pause, Adjust, Stop, StopAndRollback],
            Phase::Pausing | Phase::Paused => &[Continue, Adjust, Stop, StopAndRollback],
            Phase::ReadyToCutOver => &[CutOver, Pause, Adjust, Stop, StopAndRollback],
            Phase::Errored => &[Resume, Rollback, MarkCompleted],
            Phase::RunnerSilent => &[MarkErrored],
            // A stop or a rollback under way is never interrupted: halfway, both the old and the new state would
            // be partly there.
            Phase::Stopping | Phase::RollingBack | Phase::Completed => &[],
        }
    }

    /// The name in `list --json`, `/metrics` labels, CSS classes and test selectors.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::NotStarted => "not_started",
            Phase::Queued => "queued",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Waiting => "waiting",
            Phase::Pausing => "pausing",
            Phase::Paused => "paused",
            Phase::ReadyToCutOver => "ready_to_cut_over",
            Phase::Stopping => "stopping",
            Phase::RollingBack => "rolling_back",
            Phase::Completed => "completed",
            Phase::Errored => "errored",
            Phase::RolledBack => "rolled_back",
            Phase::FailedAtStartup => "failed_at_startup",
            Phase::RunnerSilent => "runner_silent",
        }
    }

    /// The badge's word.
    pub fn label(self) -> &'static str {
        match self {
            Phase::NotStarted => "Not started",
            Phase::Queued => "Queued",
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Waiting => "Waiting",
            Phase::Pausing => "Pausing",
            Phase::Paused => "Paused",
            Phase::ReadyToCutOver => "Ready to cut over",
            Phase::Stopping => "Stopping",
            Phase::RollingBack => "Rolling back",
            Phase::Completed => "Completed",
            Phase::Errored => "Errored",
            Phase::RolledBack => "Rolled back",
            Phase::FailedAtStartup => "Failed at startup",
            Phase::RunnerSilent => "Runner silent",
        }
    }
}

impl fmt::Display for Phase {
    /// The phase in a sentence: "it is {phase}".
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Phase::NotStarted => "not started",
            Phase::Queued => "queued",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Waiting => "waiting",
            Phase::Pausing => "pausing",
            Phase::Paused => "paused",
            Phase::ReadyToCutOver => "ready to cut over",
            Phase::Stopping => "stopping",
            Phase::RollingBack => "being rolled back",
            Phase::Completed => "completed successfully",
            Phase::Errored => "errored",
            Phase::RolledBack => "rolled back",
            Phase::FailedAtStartup => "failed at startup",
            Phase::RunnerSilent => "held by a runner that stopped heartbeating",
        })
    }
}

/// What a staff user (or auto-start) can ask of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Resume,
    Pause,
    Continue,
    /// Drop the backup a completed migration kept, after which it can no longer be rolled back.
    Finalize,
    /// Change the parameters a migration declares adjustable while it runs.
    Adjust,
    /// Let a run that holds its cut-over swap the tables now.
    CutOver,
    Stop,
    StopAndRollback,
    Rollback,
    /// An escape hatch: a migration whose runner went silent is marked errored, with a reason, so that it can be
    /// resumed or rolled back.
    MarkErrored,
    /// An escape hatch: an errored migration staff finished by hand is marked completed, with a reason.
    MarkCompleted,
}

impl Action {
    /// The menu's order.
    pub const ALL: [Action; 12] = [
        Action::Start,
        Action::Resume,
        Action::Pause,
        Action::Continue,
        Action::Adjust,
        Action::CutOver,
        Action::Stop,
        Action::StopAndRollback,
        Action::Rollback,
        Action::MarkErrored,
        Action::MarkCompleted,
        Action::Finalize,
    ];

    /// Refuses the action unless it is allowed in the situation `observed` ([`Observed::allowed_actions`]).
    pub fn check(self, migration: &str, observed: Observed) -> Result<(), IllegalAction> {
        let phase = Phase::of(observed);
        if observed.allowed_actions().contains(&self) {
            Ok(())
        } else {
            Err(IllegalAction { action: self, migration: migration.to_string(), phase })
        }
    }

    /// The phases this action may be asked in (rollback and finalize also when completed with a backup kept).
    pub fn allowed_in(self) -> Vec<Phase> {
        let after_completion = matches!(self, Action::Rollback | Action::Finalize);
        Phase::ALL
            .into_iter()
            .filter(|phase| phase.allowed_actions().contains(&self) || after_completion && *phase == Phase::Completed)
            .collect()
    }

    /// The verb as staff read it.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Resume => "resume",
            Action::Pause => "pause",
            Action::Continue => "continue",
            Action::Adjust => "adjust",
            Action::CutOver => "cut over",
            Action::Stop => "stop",
            Action::StopAndRollback => "stop and roll back",
            Action::Rollback => "roll back",
            Action::MarkErrored => "mark errored",
            Action::MarkCompleted => "mark completed",
            Action::Finalize => "finalize",
        }
    }

    /// The name in the audit log and `list --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Resume => "resume",
            Action::Pause => "pause",
            Action::Continue => "continue",
            Action::Adjust => "adjust",
            Action::CutOver => "cut_over",
            Action::Stop => "stop",
            Action::StopAndRollback => "stop_and_rollback",
            Action::Rollback => "rollback",
            Action::MarkErrored => "mark_errored",
            Action::MarkCompleted => "mark_completed",
            Action::Finalize => "finalize",
        }
    }

    /// The menu's words.
    pub fn label(self) -> &'static str {
        match self {
            Action::Start => "Run",
            Action::Resume => "Resume",
            Action::Pause => "Pause",
            Action::Continue => "Continue",
            Action::Adjust => "Adjust",
            Action::CutOver => "Cut over",
            Action::Stop => "Stop",
            Action::StopAndRollback => "Stop and roll back",
            Action::Rollback => "Roll back",
            Action::MarkErrored => "Mark errored",
            Action::MarkCompleted => "Mark completed",
            Action::Finalize => "Finalize",
        }
    }

    /// Actions that kill a query, undo work, change what the product reads or record what did not run, and so
    /// ask for confirmation first.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Action::Stop
                | Action::StopAndRollback
                | Action::Rollback
                | Action::CutOver
                | Action::Finalize
                | Action::MarkErrored
                | Action::MarkCompleted
        )
    }

    /// The escape hatches, which staff must give a reason for (shown on the row and in the audit log).
    pub fn needs_reason(self) -> bool {
        matches!(self, Action::MarkErrored | Action::MarkCompleted)
    }
}

/// An action the migration's phase does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IllegalAction {
    pub action: Action,
    pub migration: String,
    pub phase: Phase,
}

impl fmt::Display for IllegalAction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IllegalAction { action, migration, phase } = self;
        let verb = action.verb();
        if *phase == Phase::RollingBack {
            return write!(formatter, "cannot {verb} {migration}: it is being rolled back; wait until the rollback ends");
        }
        let after_completion = matches!(action, Action::Rollback | Action::Finalize);
        if *phase == Phase::Completed && after_completion {
            return write!(formatter, "cannot {verb} {migration}: it completed and no backup of what it replaced is kept");
        }
        let allowed: Vec<String> = action
            .allowed_in()
            .iter()
            .map(|allowed| match allowed {
                Phase::Completed if after_completion => "completed with its backup kept".to_string(),
                other => other.to_string(),
            })
            .collect();
        let allowed = match allowed.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        write!(formatter, "cannot {verb} {migration}: it is {phase}, and {verb} needs it to be {allowed}")
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
            | (Errored, Completed) // staff finished it by hand (mark completed)
            | (Completed, RolledBack) // rolled back from the backup it kept
            | (Completed, Errored) // that rollback failed
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

/// What values a migration's parameter accepts. Externally tagged, serde's default, like the staff page's other
/// enums: the page's WASM reads it without buffering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterKind {
    /// A whole number within `min..=max`.
    Integer { min: i64, max: i64 },
    /// `true` or `false`.
    Boolean,
    /// A ClickHouse table or column name: letters, digits and `_`, not starting with a digit.
    Identifier,
    /// Free text up to `max_length` characters, rendered as an escaped string literal.
    Text { max_length: usize },
}

impl ParameterKind {
    /// What a value must look like, in words.
    pub fn hint(&self) -> String {
        match self {
            ParameterKind::Integer { min, max } => format!("a whole number from {min} to {max}"),
            ParameterKind::Boolean => "true or false".into(),
            ParameterKind::Identifier => "a table or column name".into(),
            ParameterKind::Text { max_length } => format!("text, at most {max_length} characters"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_status(status: Status) -> Observed {
        Observed { status, claimed: status.is_active(), ..Observed::default() }
    }

    #[test]
    fn statuses_and_phases_round_trip_through_their_names() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn each_phase_comes_from_what_is_observed() {
        use Phase::*;
        let running = in_status(Status::Running);
        let cases = [
            (in_status(Status::NotStarted), NotStarted),
            (Observed { status: Status::Starting, ..Observed::default() }, Queued),
            (in_status(Status::Starting), Starting),
            (running, Running),
            (Observed { waiting: true, ..running }, Waiting),
            (Observed { pause_requested: true, ..running }, Pausing),
            (Observed { pause_requested: true, waiting: true, ..running }, Pausing),
            (Observed { pause_requested: true, held: true, ..running }, Paused),
            // Continue clears the request at once; the runner lets go of the hold a moment later.
            (Observed { held: true, ..running }, Running),
            (Observed { cutover_ready: true, waiting: true, ..running }, ReadyToCutOver),
            (Observed { cutover_ready: true, pause_requested: true, held: true, ..running }, Paused),
            (Observed { stop_requested: true, pause_requested: true, held: true, ..running }, Stopping),
            (Observed { stop_requested: true, ..in_status(Status::Starting) }, Stopping),
            (Observed { pause_requested: true, ..Observed { status: Status::Starting, ..Observed::default() } }, Pausing),
            (Observed { rolling_back: true, ..in_status(Status::Errored) }, RollingBack),
            (in_status(Status::Completed), Completed),
            (in_status(Status::Errored), Errored),
            (in_status(Status::RolledBack), RolledBack),
            (in_status(Status::FailedAtStartup), FailedAtStartup),
            (Observed { runner_silent: true, pause_requested: true, held: true, ..running }, RunnerSilent),
            (Observed { runner_silent: true, rolling_back: true, claimed: true, ..in_status(Status::Errored) }, RunnerSilent),
            (Observed { runner_silent: true, ..in_status(Status::Errored) }, Errored),
        ];
        for (observed, phase) in cases {
            assert_eq!(Phase::of(observed), phase, "{observed:?}");
        }
    }

    /// The table staff rely on, written out: every phase with exactly what may be asked in it.
    #[test]
    fn each_phase_allows_exactly_these_actions() {
        use Action::*;
        let table: [(Phase, &[Action]); 15] = [
            (Phase::NotStarted, &[Start]),
            (Phase::Queued, &[Pause, Adjust, Stop, StopAndRollback]),
            (Phase::Starting, &[Pause, Adjust, Stop, StopAndRollback]),
            (Phase::Running, &[Pause, Adjust, Stop, StopAndRollback]),
            (Phase::Waiting, &[Pause, Adjust, Stop, StopAndRollback]),
            (Phase::Pausing, &[Continue, Adjust, Stop, StopAndRollback]),
            (Phase::Paused, &[Continue, Adjust, Stop, StopAndRollback]),
            (Phase::ReadyToCutOver, &[CutOver, Pause, Adjust, Stop, StopAndRollback]),
            (Phase::Stopping, &[]),
            (Phase::RollingBack, &[]),
            (Phase::Completed, &[]),
            (Phase::Errored, &[Resume, Rollback, MarkCompleted]),
            (Phase::RolledBack, &[Start]),
            (Phase::FailedAtStartup, &[Start]),
            (Phase::RunnerSilent, &[MarkErrored]),
        ];
        for (phase, actions) in table {
            assert_eq!(phase.allowed_actions(), actions, "{phase:?}");
        }
    }

    #[test]
    fn a_completed_migration_with_its_backup_kept_can_be_rolled_back_or_finalized() {
        let completed = in_status(Status::Completed);
        assert_eq!(completed.allowed_actions(), []);
        assert_eq!(Observed { backup_kept: true, ..completed }.allowed_actions(), [Action::Rollback, Action::Finalize]);
        assert_eq!(Phase::of(Observed { backup_kept: true, ..completed }), Phase::Completed);
        assert_eq!(Observed { backup_kept: true, rolling_back: true, ..completed }.allowed_actions(), []);
        let refusal = Action::Finalize.check("0001_x", completed).unwrap_err();
        assert_eq!(refusal.to_string(), "cannot finalize 0001_x: it completed and no backup of what it replaced is kept");
    }

    #[test]
    fn refusals_name_the_migration_its_phase_and_what_is_needed() {
        let refusal = Action::Rollback.check("0001_orders_sort_key", in_status(Status::NotStarted)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "cannot roll back 0001_orders_sort_key: it is not started, and roll back needs it to be completed with its backup kept or errored"
        );
        let refusal = Action::Continue.check("0001_orders_sort_key", in_status(Status::Running)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "cannot continue 0001_orders_sort_key: it is running, and continue needs it to be pausing or paused"
        );
        let rolling_back = Observed { rolling_back: true, ..in_status(Status::Errored) };
        for action in Action::ALL {
            let refusal = action.check("0001_x", rolling_back).unwrap_err();
            assert!(refusal.to_string().ends_with("it is being rolled back; wait until the rollback ends"), "{refusal}");
        }
    }

    /// The runner's moves, written out: every other pair of statuses is refused.
    #[test]
    fn the_runner_moves_exactly_along_these_pairs() {
        use Status::*;
        let legal = [
            (NotStarted, Starting),
            (NotStarted, Completed),
            (RolledBack, Starting),
            (FailedAtStartup, Starting),
            (Errored, Starting),
            (Starting, Running),
            (Starting, FailedAtStartup),
            (Starting, Errored),
            (Running, Completed),
            (Running, Errored),
            (Errored, RolledBack),
            (Errored, Completed),
            (Completed, RolledBack),
            (Completed, Errored),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(check_move("m", from, to).is_ok(), legal.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }
}
