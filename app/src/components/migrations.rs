//! The Management tab: the migrations table, one row per migration, each with its "…" action menu. On a
//! phone-wide screen the stylesheet turns the rows into cards.

use std::time::Duration;

use leptos::prelude::*;

use crate::components::{LoadError, Moment};
use crate::console::use_console;
use crate::dom::{self, MenuMove};
use crate::model::{MigrationRow, Phase, ReplicaRow, Status, UnixMillis};
use crate::time;

/// The table, with a one-line summary of what is going on.
#[component]
pub fn MigrationsPanel() -> impl IntoView {
    let console = use_console();
    let summary = move || {
        console.rows.with(|rows| {
            let count = |status: Status| rows.values().filter(|row| row.status == status).count();
            let mut parts = vec![format!("{} migration{}", rows.len(), if rows.len() == 1 { "" } else { "s" })];
            for (status, what) in [(Status::Running, "running"), (Status::Errored, "errored"), (Status::NotStarted, "not started")] {
                if count(status) > 0 {
                    parts.push(format!("{} {what}", count(status)));
                }
            }
            parts.join(" · ")
        })
    };
    // Everything that reads the rows sits inside the Suspense, so the server renders it with the data.
    view! {
        <section class="panel" aria-labelledby="migrations-title">
            <Suspense fallback=|| view! { <p class="loading">"Loading migrations…"</p> }>
                {move || console.migrations.get().map(|loaded| match loaded {
                    Ok(_) => view! {
                        <div class="panel-header">
                            <h2 id="migrations-title">"Migrations"</h2>
                            <span class="muted" id="migrations-summary">{summary}</span>
                        </div>
                        <MigrationsTable/>
                    }
                    .into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn MigrationsTable() -> impl IntoView {
    let console = use_console();
    let names = move || console.rows.with(|rows| rows.keys().cloned().collect::<Vec<_>>());
    view! {
        <Show
            when=move || console.rows.with(|rows| !rows.is_empty())
            fallback=|| view! { <p class="empty">"This amigo version defines no async migrations."</p> }
        >
            <table class="migrations">
                <thead>
                    <tr>
                        <th scope="col">"Migration"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Progress"</th>
                        <th scope="col">"Operation"</th>
                        <th scope="col">"Query"</th>
                        <th scope="col">"Started"</th>
                        <th scope="col">"Finished"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=names key=|name| name.clone() children=|name| view! { <MigrationRowView name/> }/>
                </tbody>
            </table>
        </Show>
    }
}

/// One migration; every cell follows the row as live updates arrive.
#[component]
fn MigrationRowView(name: String) -> impl IntoView {
    let console = use_console();
    let row = {
        let name = name.clone();
        Memo::new(move |_| console.rows.with(|rows| rows.get(&name).cloned().unwrap_or_default()))
    };
    let status_tone = move || row.with(tone);
    let running = move || row.with(|row| matches!(row.phase, Phase::Running | Phase::Waiting | Phase::Pausing));
    // (time, percent) as progress arrives in the browser, for the ETA.
    let samples = RwSignal::new(Vec::<(UnixMillis, u8)>::new());
    Effect::new(move |_| {
        let (progress, is_running) = (row.with(|row| row.progress), running());
        samples.update(|samples| {
            if !is_running {
                samples.clear();
            } else if samples.last().is_none_or(|&(_, last)| last != progress) {
                let now = time::now_millis();
                samples.push((now, progress));
                samples.retain(|&(at, _)| now - at <= time::ETA_WINDOW_MILLIS);
            }
        });
    });
    let timing = move || {
        row.with(|row| {
            let started = row.started_at.filter(|_| row.status == Status::Running)?;
            let eta = samples.with(|samples| time::remaining(samples)).map_or_else(|| "estimating…".to_string(), time::duration);
            Some((time::duration(console.now.get() - started), eta))
        })
    };
    view! {
        <tr
            data-migration=name.clone()
            data-status=move || row.with(|row| row.status.as_str())
            data-phase=move || row.with(|row| row.phase.as_str())
        >
            <td class="cell-name" data-label="Migration">
                <div class="migration-name">{name.clone()}</div>
                <div class="migration-description">{move || row.with(|row| row.description.clone())}</div>
            </td>
            <td data-label="Status">
                <span class=move || format!("badge badge-{}", status_tone()) data-field="status">
                    {move || row.with(|row| row.phase.label())}
                </span>
                {move || row.with(situation).map(|text| view! { <div class="waiting" data-field="situation">{text}</div> })}
            </td>
            <td data-label="Progress">
                <div class="progress-line">
                    <div
                        class="progress"
                        class:progress-active=running
                        role="progressbar"
                        aria-label=format!("Progress of {name}")
                        aria-valuemin="0"
                        aria-valuemax="100"
                        aria-valuenow=move || row.with(|row| row.progress)
                    >
                        <div class=move || format!("progress-fill tone-{}", status_tone()) style:width=move || format!("{}%", row.with(|row| row.progress))></div>
                    </div>
                    <span class="progress-value" data-field="progress">{move || format!("{}%", row.with(|row| row.progress))}</span>
                </div>
                <Shards row/>
                {move || {
                    timing().map(|(elapsed, eta)| {
                        view! {
                            <div class="timing" data-field="timing">
                                <span>"Elapsed " {elapsed}</span>
                                <span>"ETA " {eta}</span>
                            </div>
                        }
                    })
                }}
            </td>
            <td class="cell-operation" data-label="Operation">
                <Operation row/>
            </td>
            <td data-label="Query">
                <QueryId row/>
            </td>
            <td data-label="Started">
                <Moment at=Signal::derive(move || row.with(|row| row.started_at))/>
            </td>
            <td data-label="Finished">
                <Moment at=Signal::derive(move || row.with(|row| row.finished_at))/>
            </td>
            <td class="cell-actions">
                <ActionMenu name=name.clone() row/>
            </td>
        </tr>
    }
    .into_any()
}

/// The badge colour of a row's phase.
fn tone(row: &MigrationRow) -> &'static str {
    match row.phase {
        Phase::NotStarted => "neutral",
        Phase::Queued | Phase::Starting | Phase::Running => "info",
        Phase::Completed => "success",
        Phase::Errored | Phase::FailedAtStartup | Phase::RunnerSilent => "danger",
        Phase::Waiting | Phase::Pausing | Phase::Paused | Phase::Stopping | Phase::RollingBack | Phase::RolledBack => "warning",
        Phase::ReadyToCutOver => "success",
    }
}

/// What the line under the badge says: who paused or stopped it, why the runner waits, the backup a completed
/// run keeps, or staff's note (checks skipped, marked by hand).
fn situation(row: &MigrationRow) -> Option<String> {
    match row.phase {
        Phase::Pausing => Some(format!("paused by {}; the unit of work in progress finishes first", row.pause_requested_by.as_deref()?)),
        Phase::Paused => Some(format!("paused by {}", row.pause_requested_by.as_deref()?)),
        Phase::Stopping => Some(format!("stop requested by {}", row.stop_requested_by.as_deref()?)),
        Phase::ReadyToCutOver => Some("copied and caught up; still copying new inserts until someone clicks Cut over".into()),
        Phase::RunnerSilent => Some(format!(
            "its runner's last heartbeat was {} ago; no live runner has taken it over",
            time::duration(row.heartbeat_age_seconds? as i64 * 1000)
        )),
        Phase::Completed if row.backup.is_some() => row.backup.as_ref().map(|backup| {
            let kept = backup.since.map(|since| format!(" for {}", time::duration(time::now_millis() - since))).unwrap_or_default();
            format!("backup {} kept{kept}: {} on disk; roll back from it, or Finalize to drop it", backup.table, backup.size)
        }),
        _ => row.waiting_reason.clone().or_else(|| row.status_note.clone()),
    }
}

/// "Operation 2 of 4" and what it does; just the count before a run.
#[component]
fn Operation(row: Memo<MigrationRow>) -> impl IntoView {
    move || {
        row.with(|row| {
            let count = row.operation_count;
            if matches!(row.status, Status::NotStarted | Status::RolledBack) || count == 0 {
                let text = format!("{count} operation{}", if count == 1 { "" } else { "s" });
                return view! { <span class="muted" data-field="operation">{text}</span> }.into_any();
            }
            if row.status == Status::Completed {
                let note = if row.started_at.is_none() { "not needed on this instance" } else { "all done" };
                return view! {
                    <div data-field="operation">{format!("{count} of {count}")}</div>
                    <div class="operation-description">{note}</div>
                }
                .into_any();
            }
            let index = (row.current_operation_index + 1).min(count);
            view! {
                <div data-field="operation">{format!("{index} of {count}")}</div>
                <div class="operation-description">{row.current_operation.clone()}</div>
            }
            .into_any()
        })
    }
}

/// On a cluster: each shard's progress in the latest operation that ran shard by shard, the node its
/// statements run on and its query.
#[component]
fn Shards(row: Memo<MigrationRow>) -> impl IntoView {
    move || {
        row.with(|row| {
            if row.shards.is_empty() {
                return None;
            }
            let shards = row
                .shards
                .iter()
                .map(|shard| {
                    let query = shard.current_query_id.as_deref().map(short_query_id).unwrap_or_default();
                    view! {
                        <li data-shard=shard.shard>
                            <span class="shard-name">{format!("Shard {}", shard.shard)}</span>
                            <div class="progress shard-progress" role="progressbar" aria-label=format!("Progress of shard {}", shard.shard)
                                aria-valuemin="0" aria-valuemax="100" aria-valuenow=shard.progress>
                                <div class="progress-fill tone-info" style:width=format!("{}%", shard.progress)></div>
                            </div>
                            <span class="shard-value" data-field="shard-progress">{format!("{}%", shard.progress)}</span>
                            <span class="shard-node" title="The replica this shard's statements run on">
                                "runs on " <code data-field="shard-node">{shard.node.clone()}</code>
                            </span>
                            <code class="shard-query" data-field="shard-query-id" title=shard.current_query_id.clone().unwrap_or_default()>{query}</code>
                            {shard.replicas.iter().map(replica_line).collect::<Vec<_>>()}
                        </li>
                    }
                })
                .collect::<Vec<_>>();
            Some(view! { <ul class="shards" data-field="shards">{shards}</ul> })
        })
    }
}

/// One of a shard's other replicas, as it answered at the latest reading: how far behind it is and how many
/// replication tasks it has queued, or that it does not answer or cannot be written.
fn replica_line(replica: &ReplicaRow) -> impl IntoView {
    let (state, text) = if !replica.answering {
        ("not-answering", "not answering".to_string())
    } else if replica.readonly_tables > 0 {
        ("read-only", format!("read-only, {} s behind", replica.lag_seconds))
    } else {
        let state = if replica.lag_seconds > 0 { "behind" } else { "ok" };
        (state, format!("{} s behind, {} queued", replica.lag_seconds, replica.queue_size))
    };
    view! {
        <span class="shard-replica" data-field="replica" data-replica=replica.node.clone() data-state=state
            title="Another replica of this shard, at the latest reading (every 5 s)">
            "replica " <code data-field="replica-node">{replica.node.clone()}</code> ": "
            <span data-field="replica-state">{text}</span>
        </span>
    }
}

/// The running ClickHouse query's id, with a button that copies it.
#[component]
fn QueryId(row: Memo<MigrationRow>) -> impl IntoView {
    let copied = RwSignal::new(false);
    move || match row.with(|row| row.current_query_id.clone()) {
        Some(query_id) => {
            let to_copy = query_id.clone();
            let copy = move |_| {
                dom::copy_to_clipboard(&to_copy);
                copied.set(true);
                set_timeout(move || copied.set(false), Duration::from_millis(1500));
            };
            view! {
                <div class="query-id">
                    <code data-field="query-id" data-query-id=query_id.clone() title=query_id.clone()>{short_query_id(&query_id)}</code>
                    <button type="button" class="button ghost tiny" on:click=copy aria-label="Copy the query id">
                        {move || if copied.get() { "Copied" } else { "Copy" }}
                    </button>
                </div>
            }
            .into_any()
        }
        None => view! { <span class="muted" data-field="query-id">"—"</span> }.into_any(),
    }
}

/// The end of a query id, which tells it from the others (`amigo-<migration>-op<n>-<unique>`); the whole
/// id is in the title and on the clipboard.
fn short_query_id(query_id: &str) -> String {
    let characters: Vec<char> = query_id.chars().collect();
    if characters.len() <= 13 {
        return query_id.to_string();
    }
    format!("…{}", characters[characters.len() - 12..].iter().collect::<String>())
}

/// The "…" button and its menu, a popover (the browser closes it on Escape and on a click elsewhere): only
/// what the status allows, and the error log. Arrow keys, Home and End move through the items.
#[component]
fn ActionMenu(name: String, row: Memo<MigrationRow>) -> impl IntoView {
    let console = use_console();
    let button_id = format!("actions-{name}");
    let menu_id = format!("menu-{name}");
    let anchor = anchor_name(&name);
    let menu_ref = NodeRef::<leptos::html::Ul>::new();
    let focus_first_when_open = move |_| {
        if let Some(menu) = menu_ref.get_untracked() {
            if dom::is_popover_open(&menu) {
                dom::focus_first(&menu, "[role=menuitem]");
            }
        }
    };
    let open_with_arrow = move |event: leptos::ev::KeyboardEvent| {
        if event.key() == "ArrowDown" {
            event.prevent_default();
            if let Some(menu) = menu_ref.get_untracked() {
                if dom::is_popover_open(&menu) {
                    dom::focus_first(&menu, "[role=menuitem]");
                } else {
                    let _ = menu.show_popover();
                }
            }
        }
    };
    let on_menu_key = move |event: leptos::ev::KeyboardEvent| {
        let Some(menu) = menu_ref.get_untracked() else { return };
        let key = event.key();
        if key == "Tab" {
            let _ = menu.hide_popover();
        } else if let Some(movement) = MenuMove::from_key(&key) {
            event.prevent_default();
            dom::move_focus(&menu, "[role=menuitem]", movement);
        }
    };
    let items = {
        let name = name.clone();
        move || {
            let mut items: Vec<(&'static str, Option<crate::model::Action>)> =
                row.with(|row| row.allowed_actions.iter().map(|action| (action.label(), Some(*action))).collect());
            items.push(("Details", None));
            items.push(("View errors", None));
            items
                .into_iter()
                .map(|(label, action)| {
                    let name = name.clone();
                    // Closed first, so that its dialog or panel takes the focus the popover gives back to the button.
                    let choose = move |_| {
                        if let Some(menu) = menu_ref.get_untracked() {
                            let _ = menu.hide_popover();
                        }
                        match action {
                            Some(action) => console.request(&name, action),
                            None => {
                                let panel = if label == "Details" { console.details_for } else { console.errors_for };
                                panel.set(Some(name.clone()));
                            }
                        }
                    };
                    let destructive = action.is_some_and(|action| action.is_destructive());
                    view! {
                        <li role="none">
                            <button type="button" role="menuitem" tabindex="-1" class="menu-item" class:menu-item-danger=destructive on:click=choose>
                                {label}
                            </button>
                        </li>
                    }
                })
                .collect_view()
        }
    };
    view! {
        <div class="menu-anchor">
            <button
                type="button"
                id=button_id.clone()
                class="button ghost menu-button"
                style=format!("anchor-name: {anchor}")
                aria-haspopup="menu"
                aria-controls=menu_id.clone()
                aria-label=format!("Actions for {name}")
                popovertarget=menu_id.clone()
                on:keydown=open_with_arrow
            >
                "…"
            </button>
            <ul
                class="menu"
                role="menu"
                id=menu_id
                popover="auto"
                style=format!("position-anchor: {anchor}")
                aria-labelledby=button_id
                node_ref=menu_ref
                on:toggle=focus_first_when_open
                on:keydown=on_menu_key
            >
                {items}
            </ul>
        </div>
    }
    .into_any()
}

/// The CSS anchor name that ties a row's menu to its button: `--actions-` and the migration's name, any
/// character an identifier may not hold replaced by `-`.
fn anchor_name(migration: &str) -> String {
    let name: String = migration
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() || character == '_' || character == '-' { character } else { '-' })
        .collect();
    format!("--actions-{name}")
}

#[cfg(test)]
mod tests {
    use super::{anchor_name, short_query_id};

    #[test]
    fn long_query_ids_keep_their_distinctive_end() {
        assert_eq!(short_query_id("amigo-e2e_0003_slow_copy-op1-3bb801f08a9b"), "…3bb801f08a9b");
        assert_eq!(short_query_id("short-id"), "short-id");
    }

    #[test]
    fn anchor_names_are_dashed_identifiers() {
        assert_eq!(anchor_name("0001_events_sort_key"), "--actions-0001_events_sort_key");
        assert_eq!(anchor_name("shop.orders v2"), "--actions-shop-orders-v2");
    }
}
