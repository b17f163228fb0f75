//! The staff page at `/instance/async_migrations`: anonymous visitors go to the login page, other accounts
//! get a "staff only" page, staff get the console with its Management, Settings and Audit tabs.

use std::time::Duration;

use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_meta::Title;

use crate::api::{current_user, list_migrations, Logout, STAFF_PAGE};
use crate::components::audit::AuditTab;
use crate::components::details::DetailsPanel;
use crate::components::dialogs::Dialogs;
use crate::components::errors_panel::ErrorsPanel;
use crate::components::migrations::MigrationsPanel;
use crate::components::settings::SettingsTab;
use crate::components::upgrade_banner::UpgradeBanner;
use crate::components::{Brand, LiveIndicator, NoticeBar};
use crate::console::Console;
use crate::loading::load;
use crate::location;
use crate::model::LoggedInUser;

/// Checks who is asking, then shows the console, the "staff only" page, or sends to the login page.
#[component]
pub fn AsyncMigrationsPage() -> impl IntoView {
    let user = load(|| (), |_| current_user());
    view! {
        <Title text="Async migrations · amigo"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) if user.is_staff => view! { <StaffConsole user/> }.into_any(),
                    Ok(Some(user)) => view! { <StaffOnly user/> }.into_any(),
                    Ok(None) => {
                        location::redirect(crate::LOGIN_PAGE);
                        ().into_any()
                    }
                    Err(error) => view! { <p class="page-error" role="alert">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The page's sections, chosen with `?tab=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Management,
    Settings,
    Audit,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Management, Tab::Settings, Tab::Audit];

    fn parse(text: Option<&str>) -> Tab {
        match text {
            Some("settings") => Tab::Settings,
            Some("audit") => Tab::Audit,
            _ => Tab::Management,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Management => "Management",
            Tab::Settings => "Settings",
            Tab::Audit => "Audit log",
        }
    }

    fn href(self) -> String {
        match self {
            Tab::Management => STAFF_PAGE.to_string(),
            Tab::Settings => format!("{STAFF_PAGE}?tab=settings"),
            Tab::Audit => format!("{STAFF_PAGE}?tab=audit"),
        }
    }
}

/// The console for staff: header, upgrade banner, tabs, and the live connection behind them.
#[component]
fn StaffConsole(user: LoggedInUser) -> impl IntoView {
    let console = Console::new(load(|| (), |_| list_migrations()));
    provide_context(console);
    console.show_answers();
    Effect::new(move |_| {
        let tick = set_interval_with_handle(move || console.now.set(crate::time::now_millis()), Duration::from_secs(1)).ok();
        #[cfg(feature = "hydrate")]
        let stream = crate::live::follow_migrations(move |rows| console.apply(rows), console.connection);
        on_cleanup(move || {
            if let Some(tick) = tick {
                tick.clear();
            }
            #[cfg(feature = "hydrate")]
            stream.abort();
        });
    });
    // The tab links change the address and the tab without a reload; back and forward change the tab back.
    let addressed_tab = || Tab::parse(location::query_value("tab").as_deref());
    let tab = RwSignal::new(addressed_tab());
    Effect::new(move |_| {
        let back_or_forward = window_event_listener(leptos::ev::popstate, move |_| tab.set(addressed_tab()));
        on_cleanup(move || back_or_forward.remove());
    });
    view! {
        <TopBar user/>
        <main class="content">
            <div class="page-heading">
                <div>
                    <h1>"Async migrations"</h1>
                    <p class="muted">"Long-running data migrations of this instance: run, stop, roll back and resume them here."</p>
                </div>
                <LiveIndicator/>
            </div>
            <UpgradeBanner/>
            <nav class="tabs" aria-label="Sections">
                {Tab::ALL
                    .into_iter()
                    .map(|item| {
                        view! {
                            <a
                                href=item.href()
                                class="tab"
                                aria-current=move || (tab.get() == item).then_some("page")
                                on:click=move |event: leptos::ev::MouseEvent| {
                                    let plain_click = event.button() == 0
                                        && !(event.ctrl_key() || event.meta_key() || event.shift_key() || event.alt_key());
                                    if plain_click {
                                        event.prevent_default();
                                        location::show_address(&item.href());
                                        tab.set(item);
                                    }
                                }
                            >
                                {item.label()}
                            </a>
                        }
                    })
                    .collect_view()}
            </nav>
            <NoticeBar/>
            {move || match tab.get() {
                Tab::Management => view! { <MigrationsPanel/> <DetailsPanel/> <ErrorsPanel/> }.into_any(),
                Tab::Settings => view! { <SettingsTab/> }.into_any(),
                Tab::Audit => view! { <AuditTab/> }.into_any(),
            }}
        </main>
        <Dialogs/>
    }
}

/// The bar across the top: the product, where we are, who is logged in.
#[component]
fn TopBar(user: LoggedInUser) -> impl IntoView {
    view! {
        <header class="topbar">
            <Brand/>
            <span class="crumbs">"Instance" <span aria-hidden="true">" / "</span> "Async migrations"</span>
            <div class="account">
                <span class="user-email" title="Logged in as">{user.email}</span>
                <form method="post" action=Logout::url()>
                    <button type="submit" class="button ghost small">"Log out"</button>
                </form>
            </div>
        </header>
    }
}

/// What a logged-in account without staff access sees.
#[component]
fn StaffOnly(user: LoggedInUser) -> impl IntoView {
    view! {
        <main class="login-page">
            <section class="login-card" aria-labelledby="staff-only-title">
                <Brand/>
                <h1 id="staff-only-title">"Staff only"</h1>
                <p>
                    "You are logged in as " <strong>{user.email}</strong>
                    ", which is not a staff account. Async migrations can change every row of the product's data, so this page is for staff only."
                </p>
                <p class="hint">
                    "If you need access, ask a staff member to create a staff account for you with "
                    <code>"amigo users create --email you@example.com --staff"</code> "."
                </p>
                <form method="post" action=Logout::url()>
                    <button type="submit" class="button wide">"Log out"</button>
                </form>
            </section>
        </main>
    }
}
