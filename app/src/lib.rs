//! amigo's web app: the HTML shell, the pages by path, the staff pages and the server functions they call.

pub mod api;
pub mod components;
pub mod console;
pub mod dom;
pub mod error;
pub mod live;
pub mod loading;
pub mod location;
pub mod model;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod session;
pub mod time;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};

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

/// The page at the requested path. Pages render completely on the server (`SsrMode::Async`, see
/// [`page_routes`]), so the HTML carries the data before the WASM loads, and a missing session redirects with a
/// real 302. No router: the page's one path and its tabs need none, and leptos_router was a tenth of the WASM
/// (bench/README.md, page weight).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, so this turns true once the WASM has hydrated the page.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let page = match location::path().as_str() {
        api::STAFF_PAGE => view! { <AsyncMigrationsPage/> }.into_any(),
        LOGIN_PAGE => view! { <LoginPage/> }.into_any(),
        "/" => {
            location::redirect(api::STAFF_PAGE);
            ().into_any()
        }
        _ => view! { <p class="not-found">"Page not found."</p> }.into_any(),
    };
    view! {
        <Stylesheet id="amigo" href="/pkg/amigo.css"/>
        <Title text="amigo"/>
        <div class="app" data-hydrated=move || hydrated.get().to_string()>
            {page}
        </div>
    }
}

/// Where visitors without a session go.
pub const LOGIN_PAGE: &str = "/login";

/// The paths [`App`] renders, for the server's router: each rendered whole before it is sent.
#[cfg(feature = "ssr")]
pub fn page_routes() -> Vec<leptos_axum::AxumRouteListing> {
    [api::STAFF_PAGE, LOGIN_PAGE, "/"]
        .into_iter()
        .map(|path| leptos_axum::AxumRouteListing::new(path.into(), leptos_router::SsrMode::Async, [leptos_router::Method::Get], vec![]))
        .collect()
}
