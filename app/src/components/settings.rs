//! The Settings tab: each runtime setting (auto-run first) with its description and current value, saved
//! one at a time with feedback next to it; the notifications sent to the webhook, and a test one.

use leptos::prelude::*;

use crate::api::{get_notifications, get_settings, SendTestNotification, UpdateSetting};
use crate::components::{LoadError, Moment};
use crate::console::use_console;
use crate::loading::load;
use crate::model::{NotificationRow, SettingRow, SettingValue};

#[component]
pub fn SettingsTab() -> impl IntoView {
    let settings = load(|| (), |_| get_settings());
    view! {
        <section class="panel" aria-labelledby="settings-title">
            <div class="panel-header">
                <h2 id="settings-title">"Settings"</h2>
                <span class="muted">"Changes take effect at once, for every runner."</span>
            </div>
            <Suspense fallback=|| view! { <p class="loading">"Loading settings…"</p> }>
                {move || settings.get().map(|loaded| match loaded {
                    Ok(rows) => view! { <SettingsList rows/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Suspense>
        </section>
        <NotificationsPanel/>
    }
}

/// The latest notifications with their delivery, read again every 2 s while one is not yet delivered, and
/// a button that sends a test one.
#[component]
fn NotificationsPanel() -> impl IntoView {
    let console = use_console();
    let send = ServerAction::<SendTestNotification>::new();
    let pending = RwSignal::new(false);
    let notifications = load(
        move || (send.version().get(), console.status_changes.get(), pending.get().then(|| console.now.get() / 2000)),
        |_| get_notifications(),
    );
    Effect::new(move |_| {
        if let Some(Ok(rows)) = notifications.get() {
            pending.set(rows.iter().any(|row| row.state == "queued" || row.state == "retrying"));
        }
    });
    let refused = move || match send.value().get() {
        Some(Err(error)) => Some(view! { <span class="form-error" role="alert">{error.to_string()}</span> }),
        _ => None,
    };
    view! {
        <section class="panel" aria-labelledby="notifications-title">
            <div class="panel-header">
                <h2 id="notifications-title">"Notifications"</h2>
                <span class="muted">"Sent to the webhook above; each is retried for about an hour and a half until it is delivered."</span>
                <button type="button" class="button small" disabled=move || send.pending().get() on:click=move |_| {
                    send.dispatch(SendTestNotification {});
                }>"Send a test notification"</button>
                {refused}
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading notifications…"</p> }>
                {move || notifications.get().map(|loaded| match loaded {
                    Ok(rows) if rows.is_empty() => view! { <p class="empty">"No notification has been sent."</p> }.into_any(),
                    Ok(rows) => view! { <NotificationsTable rows/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

#[component]
fn NotificationsTable(rows: Vec<NotificationRow>) -> impl IntoView {
    view! {
        <table class="audit notifications">
            <thead>
                <tr>
                    <th scope="col">"When"</th>
                    <th scope="col">"Message"</th>
                    <th scope="col">"Delivery"</th>
                    <th scope="col">"Last answer"</th>
                </tr>
            </thead>
            <tbody>
                {rows
                    .into_iter()
                    .map(|row| {
                        let attempts = match row.attempts {
                            0 => String::new(),
                            1 => " after 1 attempt".into(),
                            n => format!(" after {n} attempts"),
                        };
                        view! {
                            <tr data-notification=row.id data-state=row.state.clone()>
                                <td data-label="When"><Moment at=Signal::stored(Some(row.occurred_at))/></td>
                                <td data-label="Message">{row.text}</td>
                                <td data-label="Delivery">{format!("{}{attempts}", row.state)}</td>
                                <td data-label="Last answer" class="mono">{row.last_outcome.unwrap_or_else(|| "—".into())}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// What the last save of a setting said.
#[derive(Debug, Clone, PartialEq)]
struct Feedback {
    key: String,
    result: Result<(), String>,
}

#[component]
fn SettingsList(rows: Vec<SettingRow>) -> impl IntoView {
    let rows = RwSignal::new(rows);
    let save = ServerAction::<UpdateSetting>::new();
    let saving = RwSignal::new(String::new());
    let feedback = RwSignal::new(None::<Feedback>);
    Effect::new(move |_| {
        if let Some(answer) = save.value().get() {
            let key = saving.get_untracked();
            match answer {
                Ok(saved) => {
                    rows.set(saved);
                    feedback.set(Some(Feedback { key, result: Ok(()) }));
                }
                Err(error) => feedback.set(Some(Feedback { key, result: Err(error.to_string()) })),
            }
        }
    });
    let submit = move |key: String, value: serde_json::Value| {
        saving.set(key.clone());
        feedback.set(None);
        save.dispatch(UpdateSetting { key, value });
    };
    view! {
        <ul class="settings">
            <For
                each=move || rows.get()
                key=|row| format!("{}={:?}", row.key, row.value)
                children=move |row| view! { <SettingItem row feedback submit/> }
            />
        </ul>
    }
}

#[component]
fn SettingItem(
    row: SettingRow,
    feedback: RwSignal<Option<Feedback>>,
    submit: impl Fn(String, serde_json::Value) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = format!("setting-{}", row.key);
    let key = row.key.clone();
    let said = {
        let key = key.clone();
        move || {
            feedback.get().filter(|feedback| feedback.key == key).map(|feedback| match feedback.result {
                Ok(()) => view! { <span class="saved" role="status">"Saved"</span> }.into_any(),
                Err(text) => view! { <span class="form-error" role="alert">{text}</span> }.into_any(),
            })
        }
    };
    let control = match row.value {
        SettingValue::Boolean { value } => {
            let key = key.clone();
            view! {
                <label class="switch">
                    <input
                        type="checkbox"
                        role="switch"
                        id=id.clone()
                        checked=value
                        aria-describedby=format!("{id}-description")
                        on:change=move |event| submit(key.clone(), serde_json::Value::Bool(event_target_checked(&event)))
                    />
                    <span class="switch-track" aria-hidden="true"></span>
                    <span class="switch-state">{if value { "On" } else { "Off" }}</span>
                </label>
            }
            .into_any()
        }
        SettingValue::Url { value } => {
            let input = NodeRef::<leptos::html::Input>::new();
            let key = key.clone();
            let save = move |event: leptos::ev::SubmitEvent| {
                event.prevent_default();
                let Some(input) = input.get_untracked() else { return };
                submit(key.clone(), serde_json::Value::String(input.value()));
            };
            view! {
                <form class="address" on:submit=save>
                    <input
                        type="text"
                        inputmode="url"
                        id=id.clone()
                        value=value
                        node_ref=input
                        placeholder="https://hooks.slack.com/services/…"
                        aria-describedby=format!("{id}-description")
                    />
                    <button type="submit" class="button small">"Save"</button>
                </form>
            }
            .into_any()
        }
        SettingValue::WholeNumber { value, min, max, unit } => {
            let input = NodeRef::<leptos::html::Input>::new();
            let key = key.clone();
            let save = move |event: leptos::ev::SubmitEvent| {
                event.prevent_default();
                let Some(input) = input.get_untracked() else { return };
                let typed = input.value();
                let value = typed.trim().parse::<u64>().map_or(serde_json::Value::String(typed), serde_json::Value::from);
                submit(key.clone(), value);
            };
            view! {
                <form class="whole-number" on:submit=save>
                    <input
                        type="text"
                        inputmode="numeric"
                        id=id.clone()
                        value=value
                        node_ref=input
                        aria-describedby=format!("{id}-description")
                        title=format!("From {min} to {max}")
                    />
                    <span class="unit">{unit}</span>
                    <button type="submit" class="button small">"Save"</button>
                </form>
            }
            .into_any()
        }
    };
    view! {
        <li class="setting" data-setting=row.key.clone()>
            <div class="setting-text">
                <label for=id.clone() class="setting-label">{row.label}</label>
                <p class="muted" id=format!("{id}-description")>{row.description}</p>
            </div>
            <div class="setting-control">
                {control}
                {said}
            </div>
        </li>
    }
}
