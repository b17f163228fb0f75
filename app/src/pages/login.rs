//! The login page at `/login`: a plain form that works before (and without) the WASM.

use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::Login;
use crate::components::Brand;

/// Email and password; a wrong pair, or too many attempts, is said above the button.
#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let refusal = move || login.value().get().and_then(Result::err).map(|error| error.to_string());
    view! {
        <Title text="Log in · amigo"/>
        <main class="login-page">
            <section class="login-card" aria-labelledby="login-title">
                <Brand/>
                <h1 id="login-title">"Log in"</h1>
                <p class="muted">"The staff page runs, stops and rolls back this instance's async migrations."</p>
                <ActionForm action=login>
                    <div class="field">
                        <label for="email">"Email"</label>
                        <input id="email" name="email" type="email" autocomplete="username" required=true/>
                    </div>
                    <div class="field">
                        <label for="password">"Password"</label>
                        <input id="password" name="password" type="password" autocomplete="current-password" required=true/>
                    </div>
                    {move || refusal().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
                    <button type="submit" class="button primary wide" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Logging in…" } else { "Log in" }}
                    </button>
                </ActionForm>
                <p class="hint">
                    "No account yet? On the server, run "
                    <code>"amigo users create --email you@example.com"</code>
                    "; the first account on an instance is staff."
                </p>
            </section>
        </main>
    }
}
