//! The console's dialogs: the Run form with each parameter's default and description and the plan of a run
//! with the values entered, the Adjust form of a running migration's adjustable parameters, and the
//! confirmation that destructive actions ask for, naming the migration.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::api::{AdjustMigration, MarkMigration, PlanMigration, StartMigration};
use crate::components::details::Plan;
use crate::console::{use_console, Dialog};
use crate::dom;
use crate::model::{Action, ParameterField, ParameterKind};

/// Whichever dialog is open, if any.
#[component]
pub fn Dialogs() -> impl IntoView {
    let console = use_console();
    move || {
        console.dialog.get().map(|dialog| {
            view! {
                <Suspense fallback=|| view! { <p class="loading dialog-loading">"Loading…"</p> }>
                    {Suspend::new(dialog_view(dialog))}
                </Suspense>
            }
        })
    }
}

/// The open dialog's view. `#[lazy]`: in the browser the dialogs' code is a WASM chunk of its own
/// (`scripts/lib.sh`, `build_front`), fetched when the first dialog opens; the page's first load goes without it.
#[lazy]
fn dialog_view(dialog: Dialog) -> AnyView {
    match dialog {
        Dialog::Run(name) => view! { <RunDialog name/> }.into_any(),
        Dialog::Adjust(name) => view! { <AdjustDialog name/> }.into_any(),
        Dialog::Confirm(name, action) => view! { <ConfirmDialog name action/> }.into_any(),
    }
}

/// A modal frame: the platform's `<dialog>` opened with `showModal()`, which keeps the focus inside and the page
/// behind inert, and closes on Escape; a click beside it closes it too. It focuses its first field (or default
/// button) and gives the focus back to the migration's menu button when it closes.
#[component]
fn Modal(title: String, name: String, children: Children) -> impl IntoView {
    let console = use_console();
    let dialog_ref = NodeRef::<leptos::html::Dialog>::new();
    // The dialog's view comes from the lazily loaded chunk and is mounted after this effect first runs, and
    // `showModal()` needs the element in the document: it opens on the next frame.
    Effect::new(move |_| {
        if let Some(dialog) = dialog_ref.get() {
            request_animation_frame(move || {
                if !dialog.open() {
                    let _ = dialog.show_modal();
                }
                dom::focus_first(&dialog, "input, .dialog-actions .button-default");
            });
        }
    });
    let close = move || {
        console.dialog.set(None);
        dom::focus_id(&format!("actions-{name}"));
    };
    let on_close = {
        let close = close.clone();
        move |_| close()
    };
    // The dialog's own box has no padding: a click whose target is the dialog itself landed on its backdrop.
    let on_backdrop = move |event: leptos::ev::MouseEvent| {
        if event.target() == event.current_target() {
            close();
        }
    };
    view! {
        <dialog class="modal" aria-labelledby="dialog-title" node_ref=dialog_ref on:close=on_close on:click=on_backdrop>
            <div class="modal-body">
                <h2 id="dialog-title">{title}</h2>
                {children()}
            </div>
        </dialog>
    }
}

/// The parameters form of a migration about to run. The server validates the values; its refusal shows
/// here and nothing starts.
#[component]
fn RunDialog(name: String) -> impl IntoView {
    let console = use_console();
    let row = console.rows.with_untracked(|rows| rows.get(&name).cloned().unwrap_or_default());
    let values =
        RwSignal::new(row.parameters.iter().map(|field| (field.name.clone(), field.default_value.clone())).collect::<BTreeMap<_, _>>());
    Effect::new(move |_| {
        if let Some(Ok(started)) = console.start.value().get() {
            console.say(format!("{}: started", started.name));
            console.apply(vec![started]);
            console.dialog.set(None);
        }
    });
    let refusal = move || console.start.value().get().and_then(Result::err).map(|error| error.to_string());
    let pending = console.start.pending();
    let skip_reason = RwSignal::new(String::new());
    let submit = {
        let name = name.clone();
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let parameters = values.get_untracked().into_iter().map(|(key, value)| (key, serde_json::Value::String(value))).collect();
            let skip_checks = Some(skip_reason.get_untracked()).filter(|reason| !reason.trim().is_empty());
            console.start.dispatch(StartMigration { name: name.clone(), parameters, skip_checks });
        }
    };
    let plan = ServerAction::<PlanMigration>::new();
    let show_plan = {
        let name = name.clone();
        move |_| {
            let parameters = values.get_untracked().into_iter().map(|(key, value)| (key, serde_json::Value::String(value))).collect();
            plan.dispatch(PlanMigration { name: name.clone(), parameters });
        }
    };
    let planning = plan.pending();
    let planned = move || {
        plan.value().get().map(|answer| match answer {
            Ok(plan) => view! { <Plan plan/> }.into_any(),
            Err(error) => view! { <p class="form-error" role="alert">{error.to_string()}</p> }.into_any(),
        })
    };
    let fields = row.parameters.clone().into_iter().map(|field| view! { <ParameterInput field values/> }).collect_view();
    let close_name = name.clone();
    view! {
        <Modal title=format!("Run {name}") name=name.clone()>
            <form class="run-form" on:submit=submit>
                <p class="muted">{row.description.clone()}</p>
                {row.parameters.is_empty().then(|| view! { <p>"This migration takes no parameters."</p> })}
                {fields}
                <details class="skip-checks">
                    <summary>"Skip its checks for this run"</summary>
                    <div class="field">
                        <label for="skip-checks-reason">"Why"</label>
                        <input
                            type="text"
                            id="skip-checks-reason"
                            aria-describedby="skip-checks-help"
                            prop:value=move || skip_reason.get()
                            on:input=move |event| skip_reason.set(event_target_value(&event))
                        />
                        <p class="field-help" id="skip-checks-help">
                            "With a reason, this run skips the precheck and health checks (a check failing for a reason you know is harmless). The reason is shown on the row and kept in the audit log."
                        </p>
                    </div>
                </details>
                {move || refusal().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
                {planned}
                <div class="dialog-actions">
                    <button type="button" class="button" on:click=move |_| {
                        console.dialog.set(None);
                        dom::focus_id(&format!("actions-{close_name}"));
                    }>"Cancel"</button>
                    <button type="button" class="button" on:click=show_plan disabled=move || planning.get()>
                        {move || if planning.get() { "Planning…" } else { "Plan" }}
                    </button>
                    <button type="submit" class="button primary button-default" disabled=move || pending.get()>
                        {move || if pending.get() { "Starting…" } else { "Run" }}
                    </button>
                </div>
            </form>
        </Modal>
    }
}

/// The adjustable parameters of a running migration, holding the run's values: the server checks the new
/// ones, and the run takes them at its next unit of work. A refusal shows here and changes nothing.
#[component]
fn AdjustDialog(name: String) -> impl IntoView {
    let console = use_console();
    let row = console.rows.with_untracked(|rows| rows.get(&name).cloned().unwrap_or_default());
    let adjustable: Vec<ParameterField> = row.parameters.into_iter().filter(|field| field.adjustable).collect();
    let values = RwSignal::new(
        adjustable
            .iter()
            .map(|field| (field.name.clone(), field.run_value.clone().unwrap_or_else(|| field.default_value.clone())))
            .collect::<BTreeMap<_, _>>(),
    );
    let adjust = ServerAction::<AdjustMigration>::new();
    Effect::new(move |_| {
        if let Some(Ok(adjusted)) = adjust.value().get() {
            console.say(format!("{}: adjusted; it takes the new values at its next unit of work", adjusted.name));
            console.apply(vec![adjusted]);
            console.dialog.set(None);
        }
    });
    let refusal = move || adjust.value().get().and_then(Result::err).map(|error| error.to_string());
    let pending = adjust.pending();
    let submit = {
        let (name, before) = (name.clone(), values.get_untracked());
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let parameters = values
                .get_untracked()
                .into_iter()
                .filter(|(key, value)| before.get(key) != Some(value))
                .map(|(key, value)| (key, serde_json::Value::String(value)))
                .collect();
            adjust.dispatch(AdjustMigration { name: name.clone(), parameters });
        }
    };
    let empty = adjustable.is_empty();
    let fields = adjustable.into_iter().map(|field| view! { <ParameterInput field values/> }).collect_view();
    let close_name = name.clone();
    view! {
        <Modal title=format!("Adjust {name}") name=name.clone()>
            <form class="run-form" on:submit=submit>
                <p class="muted">"The run takes the new values at its next unit of work (a partition, a batch); each change is in the audit log."</p>
                {empty.then(|| view! { <p>"This migration has no parameters that can change while it runs."</p> })}
                {fields}
                {move || refusal().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
                <div class="dialog-actions">
                    <button type="button" class="button" on:click=move |_| {
                        console.dialog.set(None);
                        dom::focus_id(&format!("actions-{close_name}"));
                    }>"Cancel"</button>
                    <button type="submit" class="button primary button-default" disabled=move || pending.get() || empty>
                        {move || if pending.get() { "Adjusting…" } else { "Adjust" }}
                    </button>
                </div>
            </form>
        </Modal>
    }
}

/// One parameter: its name, an input holding the default, its description and what it accepts.
#[component]
fn ParameterInput(field: ParameterField, values: RwSignal<BTreeMap<String, String>>) -> impl IntoView {
    let id = format!("parameter-{}", field.name);
    let help_id = format!("{id}-help");
    let key = field.name.clone();
    let current = {
        let key = key.clone();
        move || values.with(|values| values.get(&key).cloned().unwrap_or_default())
    };
    let set = move |value: String| values.update(|values| drop(values.insert(key.clone(), value)));
    let input = match field.kind {
        ParameterKind::Boolean => {
            let set = set.clone();
            view! {
                <input
                    type="checkbox"
                    id=id.clone()
                    name=field.name.clone()
                    aria-describedby=help_id.clone()
                    prop:checked=move || current() == "true"
                    on:change=move |event| set(event_target_checked(&event).to_string())
                />
            }
            .into_any()
        }
        ParameterKind::Integer { .. } | ParameterKind::Identifier | ParameterKind::Text { .. } => {
            let numeric = matches!(field.kind, ParameterKind::Integer { .. });
            view! {
                <input
                    type="text"
                    id=id.clone()
                    name=field.name.clone()
                    inputmode=numeric.then_some("numeric")
                    aria-describedby=help_id.clone()
                    prop:value=current
                    on:input=move |event| set(event_target_value(&event))
                />
            }
            .into_any()
        }
    };
    view! {
        <div class="field">
            <label for=id>{field.name.clone()}</label>
            {input}
            <p class="field-help" id=help_id>
                {field.description.clone()} " "
                <span class="muted">"Default " <code>{field.default_value.clone()}</code> "; " {field.kind.hint()} "."</span>
            </p>
        </div>
    }
}

/// Asks before stopping, rolling back or an escape hatch, naming the migration and saying what will happen; an
/// escape hatch also asks why.
#[component]
fn ConfirmDialog(name: String, action: Action) -> impl IntoView {
    let console = use_console();
    let row = console.rows.with_untracked(|rows| rows.get(&name).cloned().unwrap_or_default());
    let completed_with_backup = row.backup.is_some();
    let (title, consequence): (String, String) = match action {
        Action::StopAndRollback => (
            format!("Stop and roll back {name}?"),
            "Its running ClickHouse query is killed at once, then every operation it completed is undone, newest first. The migration ends rolled back and can be run again later.".to_string(),
        ),
        Action::Rollback if completed_with_backup => (
            format!("Roll back {name}?"),
            "It completed: rolling it back undoes every operation, newest first, swapping the backup it kept back in place of the table it made. The migration ends rolled back and can be run again later.".to_string(),
        ),
        Action::Rollback => (
            format!("Roll back {name}?"),
            "Every operation it completed is undone, newest first, starting with the one where it stopped. The migration ends rolled back and can be run again later.".to_string(),
        ),
        Action::Finalize => (
            format!("Finalize {name}?"),
            match &row.backup {
                Some(backup) => format!(
                    "Its backup {} is dropped, which frees {} on disk (its size when it was made); the migration can no longer be rolled back.",
                    backup.table, backup.size
                ),
                None => "Its backup is dropped; the migration can no longer be rolled back.".to_string(),
            },
        ),
        Action::CutOver => (
            format!("Cut over {name}?"),
            "The tables are swapped now: the product reads and writes the new table from then on, and the original is kept as its backup. Rows inserted around the swap are copied over, and every partition is verified.".to_string(),
        ),
        Action::MarkErrored => (
            format!("Mark {name} errored?"),
            "Its runner stopped heartbeating and no live runner has taken it over. Make sure that runner's process is gone: marking it errored releases its lease, and it can then be resumed or rolled back.".to_string(),
        ),
        Action::MarkCompleted => (
            format!("Mark {name} completed?"),
            "Nothing runs: amigo records it as completed, as if its operations had run, so that what depends on it may start and the upgrade may go on. Do this only when its work was finished by hand.".to_string(),
        ),
        _ => (
            format!("Stop {name}?"),
            "Its running ClickHouse query is killed at once and it is left errored: you can then resume it from the operation where it stopped, or roll it back.".to_string(),
        ),
    };
    let reason = RwSignal::new(String::new());
    let confirm = {
        let name = name.clone();
        move |_| {
            console.dialog.set(None);
            if action.needs_reason() {
                let completed = action == Action::MarkCompleted;
                console.mark.dispatch(MarkMigration { name: name.clone(), completed, reason: reason.get_untracked() });
            } else {
                console.perform(&name, action);
            }
            dom::focus_id(&format!("actions-{name}"));
        }
    };
    let reason_field = action.needs_reason().then(|| {
        view! {
            <div class="field">
                <label for="mark-reason">"Reason"</label>
                <input type="text" id="mark-reason" prop:value=move || reason.get() on:input=move |event| reason.set(event_target_value(&event))/>
                <p class="field-help">"Shown on the row and in the audit log."</p>
            </div>
        }
    });
    let cancel_name = name.clone();
    view! {
        <Modal title name=name.clone()>
            <p>{consequence}</p>
            {reason_field}
            <div class="dialog-actions">
                <button type="button" class="button button-default" on:click=move |_| {
                    console.dialog.set(None);
                    dom::focus_id(&format!("actions-{cancel_name}"));
                }>"Cancel"</button>
                <button type="button" class="button danger" on:click=confirm disabled=move || action.needs_reason() && reason.get().trim().is_empty()>
                    {action.label()}
                </button>
            </div>
        </Modal>
    }
}
