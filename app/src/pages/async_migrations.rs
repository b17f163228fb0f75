//! The staff page at `/instance/async_migrations`.

use leptos::prelude::*;

use crate::api::{get_clickhouse_version, get_postgres_version};
use crate::error::AppError;

/// The async migrations page: for now, the two databases amigo works with.
#[component]
pub fn AsyncMigrationsPage() -> impl IntoView {
    let refreshes = RwSignal::new(0u32);
    let postgres_version = Resource::new(move || refreshes.get(), |_| get_postgres_version());
    let clickhouse_version = Resource::new(move || refreshes.get(), |_| get_clickhouse_version());
    view! {
        <header class="page-header">
            <h1>"Async migrations"</h1>
        </header>
        <section class="servers" aria-label="Databases">
            <dl>
                <dt>"Postgres"</dt>
                <dd id="postgres-version">
                    <Suspense fallback=|| "…">{move || postgres_version.get().map(describe)}</Suspense>
                </dd>
                <dt>"ClickHouse"</dt>
                <dd id="clickhouse-version">
                    <Suspense fallback=|| "…">{move || clickhouse_version.get().map(describe)}</Suspense>
                </dd>
            </dl>
            <button id="refresh-servers" type="button" on:click=move |_| refreshes.update(|count| *count += 1)>
                "Check again"
            </button>
            <span id="refresh-count">
                {move || match refreshes.get() {
                    0 => String::new(),
                    1 => "checked again once".to_string(),
                    count => format!("checked again {count} times"),
                }}
            </span>
        </section>
    }
}

fn describe(version: Result<String, AppError>) -> String {
    version.unwrap_or_else(|error| error.to_string())
}
