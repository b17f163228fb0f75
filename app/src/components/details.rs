//! The details panel of one migration, opened from its menu: the plan of its run (each operation with the SQL
//! it sends, what it touches, the disk and the duration), the partitions its operations work through, and the
//! history of its attempts; read again whenever the migration's row changes. Also the plan a Run dialog shows.

use leptos::prelude::*;

use crate::api::get_migration_details;
use crate::components::{LoadError, MigrationPanel};
use crate::console::use_console;
use crate::loading::load;
use crate::model::{AttemptRow, MigrationDetails, PartitionGroup, PlanView};
use crate::time;

/// How many statements of one operation the plan shows (a copy sends two per partition).
const STATEMENTS_SHOWN: usize = 20;

#[component]
pub fn DetailsPanel() -> impl IntoView {
    let console = use_console();
    let source = move || {
        console.details_for.get().map(|name| {
            let state = console.rows.with(|rows| rows.get(&name).map(|row| (row.status, row.current_operation_index, row.progress)));
            (name, state)
        })
    };
    let details = load(source, |source| async move {
        match source {
            Some((name, _)) => get_migration_details(name).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <MigrationPanel kind="details" title="Details" open_for=console.details_for>
            <Transition fallback=|| view! { <p class="loading">"Loading details…"</p> }>
                {move || details.get().map(|loaded| match loaded {
                    Ok(Some(details)) => Suspend::new(details_view(details)).into_any(),
                    Ok(None) => ().into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Transition>
        </MigrationPanel>
    }
}

/// The details' view. `#[lazy]`: in the browser a WASM chunk of its own, fetched when details first show.
#[lazy]
fn details_view(details: MigrationDetails) -> AnyView {
    view! { <Details details/> }.into_any()
}

#[component]
fn Details(details: MigrationDetails) -> impl IntoView {
    let plan = match details.plan {
        Ok(plan) => view! { <Plan plan/> }.into_any(),
        Err(error) => view! { <p class="form-error" data-field="plan-error">"No plan now: " {error}</p> }.into_any(),
    };
    let partitions = if details.partitions.is_empty() {
        view! { <p class="muted">"No operation has worked through partitions in this run."</p> }.into_any()
    } else {
        details.partitions.into_iter().map(|group| view! { <Partitions group/> }).collect_view().into_any()
    };
    view! {
        <h3>"Plan"</h3>
        {plan}
        <h3>"Partitions"</h3>
        {partitions}
        <h3>"Attempts"</h3>
        <Attempts attempts=details.attempts/>
    }
}

/// Each operation with its statements and rollback, then the tables, disk and duration.
#[component]
pub fn Plan(plan: PlanView) -> impl IntoView {
    let operations = plan
        .operations
        .into_iter()
        .map(|operation| {
            let hidden = operation.statements.len().saturating_sub(STATEMENTS_SHOWN);
            let statements = operation
                .statements
                .into_iter()
                .take(STATEMENTS_SHOWN)
                .map(|sql| view! { <pre class="sql"><code>{sql}</code></pre> })
                .collect_view();
            let rollback = if operation.rollback.is_empty() {
                view! { <p class="muted">"Rollback: nothing to undo."</p> }.into_any()
            } else {
                let statements =
                    operation.rollback.into_iter().map(|sql| view! { <pre class="sql"><code>{sql}</code></pre> }).collect_view();
                view! { <p class="muted">"Rollback:"</p> {statements} }.into_any()
            };
            view! {
                <li class="planned-operation">
                    <div><strong>{operation.description}</strong> " " <span class="badge badge-neutral">{operation.kind}</span></div>
                    {statements}
                    {(hidden > 0).then(|| view! { <p class="muted">{format!("… and {hidden} more statements of the same shape")}</p> })}
                    {(!operation.note.is_empty()).then(|| view! { <p class="muted">{operation.note}</p> })}
                    {rollback}
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="plan" data-field="plan">
            <p class="muted">"Parameters " <code>{plan.parameters}</code> ". Nothing is changed by a plan."</p>
            <ol class="planned-operations">{operations}</ol>
            <dl class="plan-figures">
                <dt>"Touches"</dt>
                <dd data-field="plan-tables">{if plan.tables.is_empty() { "no table it can measure".to_string() } else { plan.tables.join("; ") }}</dd>
                <dt>"Disk"</dt>
                <dd data-field="plan-disk" class:form-error=plan.disk_short>{plan.disk}</dd>
                <dt>"Duration"</dt>
                <dd data-field="plan-duration">{plan.duration}</dd>
            </dl>
        </div>
    }
}

/// One operation's partitions on one shard: how many are done, then each with its size and time.
#[component]
fn Partitions(group: PartitionGroup) -> impl IntoView {
    let done = group.partitions.iter().filter(|partition| partition.took_millis.is_some()).count();
    let shard = if group.shard > 0 { format!(" on shard {}", group.shard) } else { String::new() };
    let total = group.partitions.len();
    let rows = group
        .partitions
        .into_iter()
        .map(|partition| {
            let state = partition.took_millis.map_or_else(|| "pending".to_string(), |took| format!("done in {}", time::duration(took)));
            let id = partition.partition_id;
            let shown_id = id.clone();
            view! {
                <tr data-partition=id>
                    <td data-label="Partition"><code>{shown_id}</code></td>
                    <td data-label="Rows">{partition.rows}</td>
                    <td data-label="Size">{partition.size}</td>
                    <td data-label="State" data-field="partition-state">{state}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p><strong>{group.operation}</strong>{shard} ": " <span data-field="partitions-done">{format!("{done} of {total} partitions done")}</span></p>
        <table class="partitions">
            <thead><tr><th scope="col">"Partition"</th><th scope="col">"Rows"</th><th scope="col">"Size"</th><th scope="col">"State"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// Every run runners took up, newest first.
#[component]
fn Attempts(attempts: Vec<AttemptRow>) -> impl IntoView {
    if attempts.is_empty() {
        return view! { <p class="muted">"Not run yet."</p> }.into_any();
    }
    let rows = attempts
        .into_iter()
        .map(|attempt| {
            let ended = match (attempt.outcome, attempt.at_operation) {
                (Some(outcome), Some(at)) => format!("{} at operation {at}", outcome.replace('_', " ")),
                (Some(outcome), None) => outcome.replace('_', " "),
                (None, _) => "running".into(),
            };
            let took = attempt.finished_at.map(|finished| time::duration(finished - attempt.started_at)).unwrap_or_default();
            view! {
                <tr data-field="attempt">
                    <td data-label="Started"><time datetime=time::iso(attempt.started_at)>{time::exact_utc(attempt.started_at)}</time></td>
                    <td data-label="Action">{format!("{} from operation {}", attempt.action, attempt.from_operation)}</td>
                    <td data-label="By">{attempt.requested_by}</td>
                    <td data-label="Ended" data-field="attempt-outcome">{ended}</td>
                    <td data-label="Took">{took}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="attempts">
            <thead><tr><th scope="col">"Started"</th><th scope="col">"Action"</th><th scope="col">"By"</th><th scope="col">"Ended"</th><th scope="col">"Took"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
