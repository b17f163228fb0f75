//! The Audit log tab: who did what, when, newest first; read again when a migration's status changes.

use leptos::prelude::*;

use crate::api::get_audit_log;
use crate::components::{LoadError, Moment};
use crate::console::use_console;
use crate::loading::load;
use crate::model::AuditRow;

#[component]
pub fn AuditTab() -> impl IntoView {
    let console = use_console();
    let audit = load(move || console.status_changes.get(), |_| get_audit_log());
    view! {
        <section class="panel" aria-labelledby="audit-title">
            <div class="panel-header">
                <h2 id="audit-title">"Audit log"</h2>
                <button type="button" class="button ghost small" on:click=move |_| audit.refetch()>"Refresh"</button>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading the audit log…"</p> }>
                {move || audit.get().map(|loaded| match loaded {
                    Ok(entries) if entries.is_empty() => view! { <p class="empty">"Nothing has been done yet."</p> }.into_any(),
                    Ok(entries) => view! { <AuditTable entries/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

#[component]
fn AuditTable(entries: Vec<AuditRow>) -> impl IntoView {
    view! {
        <table class="audit">
            <thead>
                <tr>
                    <th scope="col">"When"</th>
                    <th scope="col">"Who"</th>
                    <th scope="col">"What"</th>
                    <th scope="col">"Migration"</th>
                    <th scope="col">"Details"</th>
                </tr>
            </thead>
            <tbody>
                {entries
                    .into_iter()
                    .map(|entry| {
                        view! {
                            <tr>
                                <td data-label="When"><Moment at=Signal::stored(Some(entry.occurred_at))/></td>
                                <td data-label="Who">{entry.actor}</td>
                                <td data-label="What">{entry.action}</td>
                                <td data-label="Migration" class="mono">{entry.migration_name.unwrap_or_else(|| "—".into())}</td>
                                <td data-label="Details"><code class="details">{entry.details}</code></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
