//! The errors panel: a migration's error log (time, operation, message, query), opened from its menu and
//! read again whenever the migration's status changes.

use leptos::prelude::*;

use crate::api::get_migration_errors;
use crate::components::{LoadError, MigrationPanel};
use crate::console::use_console;
use crate::loading::load;
use crate::model::ErrorEntry;
use crate::time;

#[component]
pub fn ErrorsPanel() -> impl IntoView {
    let console = use_console();
    let source = move || {
        console.errors_for.get().map(|name| {
            let state = console.rows.with(|rows| rows.get(&name).map(|row| (row.status, row.phase)));
            (name, state)
        })
    };
    let errors = load(source, |source| async move {
        match source {
            Some((name, _)) => get_migration_errors(name).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <MigrationPanel kind="errors" title="Errors" open_for=console.errors_for>
            <Transition fallback=|| view! { <p class="loading">"Loading errors…"</p> }>
                {move || errors.get().map(|loaded| match loaded {
                    Ok(Some(entries)) if entries.is_empty() => {
                        view! { <p class="empty">"No errors recorded for this migration."</p> }.into_any()
                    }
                    Ok(Some(entries)) => Suspend::new(errors_view(entries)).into_any(),
                    Ok(None) => ().into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Transition>
        </MigrationPanel>
    }
}

/// The errors table's view. `#[lazy]`: in the browser a WASM chunk of its own, fetched when errors first show.
#[lazy]
fn errors_view(entries: Vec<ErrorEntry>) -> AnyView {
    view! { <ErrorsTable entries/> }.into_any()
}

#[component]
fn ErrorsTable(entries: Vec<ErrorEntry>) -> impl IntoView {
    view! {
        <table class="errors">
            <thead>
                <tr>
                    <th scope="col">"Time"</th>
                    <th scope="col">"Operation"</th>
                    <th scope="col">"Message"</th>
                    <th scope="col">"Query"</th>
                </tr>
            </thead>
            <tbody>
                {entries
                    .into_iter()
                    .map(|entry| {
                        let operation = match (entry.operation_index, entry.operation) {
                            (Some(index), Some(description)) => format!("{index} · {description}"),
                            (Some(index), None) => index.to_string(),
                            (None, _) => "before the first operation".into(),
                        };
                        view! {
                            <tr>
                                <td data-label="Time"><time datetime=time::iso(entry.occurred_at)>{time::exact_utc(entry.occurred_at)}</time></td>
                                <td data-label="Operation">{operation}</td>
                                <td data-label="Message" class="error-message">{entry.message}</td>
                                <td data-label="Query"><code class="query-id-text">{entry.query_id.unwrap_or_else(|| "—".into())}</code></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
