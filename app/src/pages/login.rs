//! The login page at `/login`: a plain form post, the same with or without the WASM; a refusal comes back in the
//! address and is said above the button.

use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_meta::Title;

use crate::api::Login;
use crate::components::Brand;
use crate::location;

/// Email and password; a wrong pair, or too many attempts, is said above the button.
#[component]
pub fn LoginPage() -> impl IntoView {
    let submitting = RwSignal::new(false);
    let refusal = location::refused_form_post(Login::url()).map(|error| error.to_string());
    view! {
        <Title text="Log in · amigo"/>
        <main class="login-page">
            <section class="login-card" aria-labelledby="login-title">
                <Brand/>
                <h1 id="login-title">"Log in"</h1>
                <p class="muted">"The staff page runs, stops and rolls back this instance's async migrations."</p>
                <form method="post" action=Login::url() on:submit=move |_| submitting.set(true)>
                    <div class="field">
                        <label for="email">"Email"</label>
                        <input id="email" name="email" type="email" autocomplete="username" required=true/>
                    </div>
                    <div class="field">
                        <label for="password">"Password"</label>
                        <input id="password" name="password" type="password" autocomplete="current-password" required=true/>
                    </div>
                    {refusal.map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
                    <button type="submit" class="button primary wide" disabled=move || submitting.get()>
                        {move || if submitting.get() { "Logging in…" } else { "Log in" }}
                    </button>
                </form>
                <p class="hint">
                    "No account yet? On the server, run "
                    <code>"amigo users create --email you@example.com"</code>
                    "; the first account on an instance is staff."
                </p>
            </section>
        </main>
    }
}
