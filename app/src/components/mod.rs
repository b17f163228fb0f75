//! The staff console's parts, and the small pieces several pages share.

pub mod audit;
pub mod details;
pub mod dialogs;
pub mod errors_panel;
pub mod migrations;
pub mod settings;
pub mod upgrade_banner;

use std::time::Duration;

use leptos::prelude::*;

use crate::console::use_console;
use crate::model::UnixMillis;
use crate::time;

/// The product's name and mark.
#[component]
pub fn Brand() -> impl IntoView {
    view! {
        <a class="brand" href=crate::api::STAFF_PAGE>
            <img src="/favicon.svg" alt="" width="24" height="24"/>
            <span>"amigo"</span>
        </a>
    }
}

/// Whether the page is receiving live updates.
#[component]
pub fn LiveIndicator() -> impl IntoView {
    let console = use_console();
    view! {
        <span class="live-indicator" data-state=move || console.connection.get().as_str() role="status">
            <span class="live-dot" aria-hidden="true"></span>
            {move || console.connection.get().label()}
        </span>
    }
}

/// The answer to the last action; successes fade after a few seconds, errors stay until dismissed.
#[component]
pub fn NoticeBar() -> impl IntoView {
    let console = use_console();
    Effect::new(move |_| {
        if let Some(notice) = console.notice.get() {
            if !notice.is_error {
                set_timeout(
                    move || {
                        if console.notice.get_untracked().as_ref() == Some(&notice) {
                            console.notice.set(None);
                        }
                    },
                    Duration::from_secs(8),
                );
            }
        }
    });
    move || {
        console.notice.get().map(|notice| {
            view! {
                <div class="notice" class:notice-error=notice.is_error role=if notice.is_error { "alert" } else { "status" }>
                    <span>{notice.text}</span>
                    <button type="button" class="notice-close" aria-label="Dismiss" on:click=move |_| console.notice.set(None)>
                        "×"
                    </button>
                </div>
            }
        })
    }
}

/// A moment as "3 min ago", with the exact UTC time on hover; a dash when there is none.
#[component]
pub fn Moment(#[prop(into)] at: Signal<Option<UnixMillis>>) -> impl IntoView {
    let console = use_console();
    move || match at.get() {
        Some(at) => view! {
            <time datetime=time::iso(at) title=time::exact_utc(at)>{move || time::relative(at, console.now.get())}</time>
        }
        .into_any(),
        None => view! { <span class="muted">"—"</span> }.into_any(),
    }
}

/// A panel about one migration, opened from its menu (its errors, its details) while `open_for` names it:
/// `#KIND-panel`, titled "TITLE of NAME", scrolled into view and focused when it opens, emptied by its Close.
#[component]
pub fn MigrationPanel(kind: &'static str, title: &'static str, open_for: RwSignal<Option<String>>, children: ChildrenFn) -> impl IntoView {
    let panel_ref = NodeRef::<leptos::html::Section>::new();
    Effect::new(move |_| {
        if let Some(panel) = panel_ref.get() {
            panel.scroll_into_view();
            let _ = panel.focus();
        }
    });
    move || {
        open_for.get().map(|name| {
            let children = children.clone();
            view! {
                <section
                    class=format!("panel {kind}-panel")
                    id=format!("{kind}-panel")
                    aria-labelledby=format!("{kind}-title")
                    tabindex="-1"
                    node_ref=panel_ref
                >
                    <div class="panel-header">
                        <h2 id=format!("{kind}-title")>{title} " of " <span class="mono">{name}</span></h2>
                        <button type="button" class="button ghost small" on:click=move |_| open_for.set(None)>"Close"</button>
                    </div>
                    {children()}
                </section>
            }
        })
    }
}

/// A server function's failure, where the data should be.
#[component]
pub fn LoadError(error: crate::error::AppError) -> impl IntoView {
    view! { <p class="load-error" role="alert">{error.to_string()}</p> }
}
