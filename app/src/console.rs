//! The staff console's shared state: the migration rows (server-rendered, then kept current by the event
//! stream and by the answers of actions), the actions, the open dialog, and the messages shown.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::api::{
    CutOverMigration, FinalizeMigration, MarkMigration, PauseMigration, ResumeMigration, RollbackMigration, StartMigration, StopMigration,
};
use crate::error::AppError;
use crate::live::Connection;
use crate::loading::Loaded;
use crate::model::{Action, MigrationRow, UnixMillis};

/// A dialog over the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// The parameters form of a migration about to run.
    Run(String),
    /// The adjustable parameters of a running migration, to change.
    Adjust(String),
    /// A destructive action waiting for confirmation.
    Confirm(String, Action),
}

/// A message about the last action, shown above the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

/// Everything the console's components share; cheap to copy, provided as context.
#[derive(Clone, Copy)]
pub struct Console {
    pub migrations: Loaded<Result<Vec<MigrationRow>, AppError>>,
    /// Rows received after the page loaded: from the event stream and from actions' answers.
    pub live_rows: RwSignal<BTreeMap<String, MigrationRow>>,
    /// The rows as shown: the newest of each.
    pub rows: Memo<BTreeMap<String, MigrationRow>>,
    pub connection: RwSignal<Connection>,
    /// The page's clock, ticking every second in the browser, for relative times and ETAs.
    pub now: RwSignal<UnixMillis>,
    /// Bumped whenever a migration's status changes, so the banner and the audit log read again.
    pub status_changes: RwSignal<u32>,
    pub dialog: RwSignal<Option<Dialog>>,
    /// The migration whose errors the errors panel shows.
    pub errors_for: RwSignal<Option<String>>,
    /// The migration whose plan, partitions and attempts the details panel shows.
    pub details_for: RwSignal<Option<String>>,
    pub notice: RwSignal<Option<Notice>>,
    pub start: ServerAction<StartMigration>,
    pub stop: ServerAction<StopMigration>,
    pub rollback: ServerAction<RollbackMigration>,
    pub resume: ServerAction<ResumeMigration>,
    /// Pause and continue.
    pub pause: ServerAction<PauseMigration>,
    /// The escape hatches: mark errored, mark completed.
    pub mark: ServerAction<MarkMigration>,
    pub cut_over: ServerAction<CutOverMigration>,
    pub finalize: ServerAction<FinalizeMigration>,
}

impl Console {
    pub fn new(migrations: Loaded<Result<Vec<MigrationRow>, AppError>>) -> Console {
        let live_rows = RwSignal::new(BTreeMap::new());
        let rows = Memo::new(move |_| {
            let loaded = migrations.get().and_then(Result::ok).unwrap_or_default();
            live_rows.with(|live| newest_rows(loaded, live))
        });
        Console {
            migrations,
            live_rows,
            rows,
            connection: RwSignal::new(Connection::Connecting),
            now: RwSignal::new(crate::time::now_millis()),
            status_changes: RwSignal::new(0),
            dialog: RwSignal::new(None),
            errors_for: RwSignal::new(None),
            details_for: RwSignal::new(None),
            notice: RwSignal::new(None),
            start: ServerAction::new(),
            stop: ServerAction::new(),
            rollback: ServerAction::new(),
            resume: ServerAction::new(),
            pause: ServerAction::new(),
            mark: ServerAction::new(),
            cut_over: ServerAction::new(),
            finalize: ServerAction::new(),
        }
    }

    /// Takes in rows newer than what the page shows, and notes whether a status changed.
    pub fn apply(&self, incoming: Vec<MigrationRow>) {
        let shown = self.rows.get_untracked();
        let mut status_changed = false;
        self.live_rows.update(|live| {
            for row in incoming {
                match shown.get(&row.name) {
                    Some(known) if known.updated_at > row.updated_at => continue,
                    Some(known) => status_changed |= (known.status, known.phase) != (row.status, row.phase),
                    None => status_changed = true,
                }
                live.insert(row.name.clone(), row);
            }
        });
        if status_changed {
            self.status_changes.update(|count| *count += 1);
        }
    }

    pub fn say(&self, text: impl Into<String>) {
        self.notice.set(Some(Notice { text: text.into(), is_error: false }));
    }

    pub fn complain(&self, error: &AppError) {
        self.notice.set(Some(Notice { text: error.to_string(), is_error: true }));
    }

    /// Asks the server to do `action` to `name` (Run opens its form first; the others are confirmed
    /// first when destructive).
    pub fn request(&self, name: &str, action: Action) {
        if action == Action::Start {
            self.start.value().set(None);
            self.dialog.set(Some(Dialog::Run(name.into())));
        } else if action == Action::Adjust {
            self.dialog.set(Some(Dialog::Adjust(name.into())));
        } else if action.is_destructive() {
            self.dialog.set(Some(Dialog::Confirm(name.into(), action)));
        } else {
            self.perform(name, action);
        }
    }

    /// Sends a request that needs no more input.
    pub fn perform(&self, name: &str, action: Action) {
        let name = name.to_string();
        match action {
            // Their dialogs send them, with what they ask for.
            Action::Start | Action::Adjust | Action::MarkErrored | Action::MarkCompleted => {}
            Action::Stop => drop(self.stop.dispatch(StopMigration { name, rollback: false })),
            Action::StopAndRollback => drop(self.stop.dispatch(StopMigration { name, rollback: true })),
            Action::Rollback => drop(self.rollback.dispatch(RollbackMigration { name })),
            Action::Resume => drop(self.resume.dispatch(ResumeMigration { name })),
            Action::Pause => drop(self.pause.dispatch(PauseMigration { name, pause: true })),
            Action::Continue => drop(self.pause.dispatch(PauseMigration { name, pause: false })),
            Action::CutOver => drop(self.cut_over.dispatch(CutOverMigration { name })),
            Action::Finalize => drop(self.finalize.dispatch(FinalizeMigration { name })),
        }
    }

    /// Shows the answers of stop, rollback, resume, pause, continue and the escape hatches as they arrive (Run's
    /// and Adjust's answers are shown by their forms).
    pub fn show_answers(&self) {
        let console = *self;
        let show = move |answers: MappedSignal<Option<Result<MigrationRow, AppError>>>, what: &'static str| {
            Effect::new(move |_| {
                if let Some(answer) = answers.get() {
                    console.answered(answer, what);
                }
            });
        };
        show(console.stop.value(), "stop requested");
        show(console.rollback.value(), "rollback requested");
        show(console.resume.value(), "resume requested");
        show(console.finalize.value(), "finalized: its backup is dropped");
        show(console.cut_over.value(), "cutting over: the tables are swapped next");
        show(console.mark.value(), "marked");
        Effect::new(move |_| {
            let Some(answer) = console.pause.value().get() else { return };
            let paused = answer.as_ref().is_ok_and(|row| row.pause_requested_by.is_some());
            console.answered(answer, if paused { "pause requested; it holds after the unit of work in progress" } else { "continuing" });
        });
    }

    fn answered(&self, answer: Result<MigrationRow, AppError>, what: &str) {
        match answer {
            Ok(row) => {
                self.say(format!("{}: {what}", row.name));
                self.apply(vec![row]);
            }
            Err(error) => self.complain(&error),
        }
    }
}

/// The loaded rows, each replaced by a live one that is at least as new.
pub fn newest_rows(loaded: Vec<MigrationRow>, live: &BTreeMap<String, MigrationRow>) -> BTreeMap<String, MigrationRow> {
    let mut rows: BTreeMap<String, MigrationRow> = loaded.into_iter().map(|row| (row.name.clone(), row)).collect();
    for (name, row) in live {
        if rows.get(name).is_none_or(|loaded| loaded.updated_at <= row.updated_at) {
            rows.insert(name.clone(), row.clone());
        }
    }
    rows
}

pub fn use_console() -> Console {
    expect_context::<Console>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn row(name: &str, status: Status, updated_at: UnixMillis) -> MigrationRow {
        MigrationRow { name: name.into(), status, operation_count: 1, updated_at, ..MigrationRow::default() }
    }

    #[test]
    fn live_rows_replace_loaded_ones_only_when_newer() {
        let loaded = vec![row("a", Status::Running, 10), row("b", Status::Completed, 10)];
        let live = BTreeMap::from([
            ("a".to_string(), row("a", Status::Completed, 20)),
            ("b".to_string(), row("b", Status::Running, 5)),
            ("c".to_string(), row("c", Status::NotStarted, 1)),
        ]);
        let rows = newest_rows(loaded, &live);
        assert_eq!(rows["a"].status, Status::Completed);
        assert_eq!(rows["b"].status, Status::Completed, "an older live row must not win");
        assert!(rows.contains_key("c"));
    }
}
