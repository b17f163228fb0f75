//! amigo's web app: the HTML shell, the routes, the staff pages and the server functions they call.

pub mod api;
pub mod components;
pub mod console;
pub mod dom;
pub mod error;
pub mod live;
pub mod loading;
pub mod model;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod session;
pub mod time;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::{path, SsrMode};

use crate::pages::async_migrations::AsyncMigrationsPage;
use crate::pages::login::LoginPage;

/// The page around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app's routes. Pages render completely on the server (`SsrMode::Async`), so the HTML carries the
/// data before the WASM loads, and a missing session redirects with a real 302.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, so this turns true once the WASM has hydrated the page.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Stylesheet id="amigo" href="/pkg/amigo.css"/>
        <Title text="amigo"/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                    <Route path=path!("/instance/async_migrations") view=AsyncMigrationsPage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/") view=|| view! { <Redirect path=api::STAFF_PAGE/> }/>
                </Routes>
            </div>
        </Router>
    }
}
