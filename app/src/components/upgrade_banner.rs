//! The upgrade banner: shown while migrations this instance's version needs completed are not, naming them
//! and saying how to clear it. Read again whenever a migration's status changes.

use leptos::prelude::*;

use crate::api::get_upgrade_status;
use crate::console::use_console;
use crate::loading::load;
use crate::model::UpgradeStatus;

#[component]
pub fn UpgradeBanner() -> impl IntoView {
    let console = use_console();
    let status = load(move || console.status_changes.get(), |_| get_upgrade_status());
    view! {
        <Transition fallback=|| ()>
            {move || {
                status
                    .get()
                    .and_then(Result::ok)
                    .filter(|status| !status.pending.is_empty())
                    .map(|status| view! { <Banner status/> })
            }}
        </Transition>
    }
}

#[component]
fn Banner(status: UpgradeStatus) -> impl IntoView {
    let count = status.pending.len();
    view! {
        <section class="banner banner-warning" id="upgrade-banner" aria-labelledby="upgrade-title">
            <h2 id="upgrade-title">
                {format!(
                    "Upgrade blocked: amigo {} needs {} async migration{} completed first",
                    status.target_version,
                    count,
                    if count == 1 { "" } else { "s" },
                )}
            </h2>
            <ul>
                {status
                    .pending
                    .into_iter()
                    .map(|pending| {
                        view! {
                            <li data-pending=pending.name.clone()>
                                <strong class="mono">{pending.name.clone()}</strong>
                                {format!(
                                    " — runs on amigo {} to {}; {}",
                                    pending.min_version,
                                    pending.max_version,
                                    pending.status,
                                )}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            <p>
                "These migrations only run on the amigo versions named. Complete each one on such a version (the one you upgraded from, or "
                <code>"AMIGO_INSTANCE_VERSION"</code>
                " set to a version in its range), then upgrade. Until then "
                <code>"amigo serve"</code>
                " refuses to start without "
                <code>"--skip-upgrade-check"</code>
                "; "
                <code>"amigo check-upgrade"</code>
                " lists the same migrations."
            </p>
        </section>
    }
}
