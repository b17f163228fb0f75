//! Server functions: each checks the session itself, calls one engine verb, and maps the error.
//!
//! All are POSTs at `/api/<name>`. Login and logout take form fields: the page posts them as plain forms, with or
//! without the WASM, whose build then holds no form reader. The others take JSON.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::AppError;
use crate::model::{
    AuditRow, ErrorEntry, LoggedInUser, MigrationDetails, MigrationRow, NotificationRow, PlanView, SettingRow, UpgradeStatus,
};

/// Where staff land after logging in.
pub const STAFF_PAGE: &str = "/instance/async_migrations";

#[cfg(feature = "ssr")]
mod server {
    use axum::http::HeaderMap;
    use engine::accounts::User;
    use engine::Engine;
    use leptos::prelude::*;

    use crate::error::AppError;
    use crate::model::MigrationRow;
    use crate::session;

    /// The engine handle, provided to every server function by the server's router.
    pub fn engine() -> Result<Engine, AppError> {
        use_context::<Engine>().ok_or_else(|| AppError::Internal("engine missing from context".into()).respond())
    }

    pub async fn headers() -> Result<HeaderMap, AppError> {
        leptos_axum::extract::<HeaderMap>().await.map_err(|error| AppError::Internal(error.to_string()).respond())
    }

    /// The engine and the staff user making this request; refuses (401 or 403) everyone else.
    pub async fn require_staff() -> Result<(Engine, User), AppError> {
        let engine = engine()?;
        let user = session::staff_user(&engine, &headers().await?).await.map_err(AppError::respond)?;
        Ok((engine, user))
    }

    /// The migration's row as it is now, to show an action's result at once.
    pub async fn row(engine: &Engine, name: &str) -> Result<MigrationRow, AppError> {
        Ok(engine.migration(name).await?.into())
    }

    /// The client's address, for rate-limiting logins ("unknown" when the server was not told).
    pub async fn client_address() -> String {
        leptos_axum::extract::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .await
            .map_or_else(|_| "unknown".into(), |info| info.0.ip().to_string())
    }

    /// Adds a `Set-Cookie` header to the response.
    pub fn set_cookie(cookie: &str) {
        if let (Some(response), Ok(value)) = (use_context::<leptos_axum::ResponseOptions>(), axum::http::HeaderValue::from_str(cookie)) {
            response.append_header(axum::http::header::SET_COOKIE, value);
        }
    }
}

#[cfg(feature = "ssr")]
use server::*;

/// Lists every migration with what the staff user may do with each now.
#[server(endpoint = "list_migrations", input = Json)]
pub async fn list_migrations() -> Result<Vec<MigrationRow>, AppError> {
    let (engine, _) = require_staff().await?;
    Ok(engine.list().await?.into_iter().map(MigrationRow::from).collect())
}

/// Starts a migration with the given parameter values; defaults fill the rest. With `skip_checks` (the reason),
/// its precheck and health checks are skipped for this run.
#[server(endpoint = "start_migration", input = Json)]
pub async fn start_migration(
    name: String,
    parameters: serde_json::Map<String, serde_json::Value>,
    #[server(default)] skip_checks: Option<String>,
) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    match skip_checks {
        Some(reason) => engine.start_skipping_checks(&name, &user.email, &parameters, &reason).await?,
        None => engine.start(&name, &user.email, &parameters).await?,
    }
    row(&engine, &name).await
}

/// Stops a running migration, killing its query, and rolls it back if asked to.
#[server(endpoint = "stop_migration", input = Json)]
pub async fn stop_migration(name: String, rollback: bool) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    engine.stop(&name, &user.email, rollback).await?;
    row(&engine, &name).await
}

/// Rolls back an errored migration.
#[server(endpoint = "rollback_migration", input = Json)]
pub async fn rollback_migration(name: String) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    engine.rollback(&name, &user.email).await?;
    row(&engine, &name).await
}

/// Resumes an errored migration from the operation where it stopped.
#[server(endpoint = "resume_migration", input = Json)]
pub async fn resume_migration(name: String) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    engine.resume(&name, &user.email).await?;
    row(&engine, &name).await
}

/// Pauses a running migration after its unit of work in progress (`pause`), or lets a paused one go on.
#[server(endpoint = "pause_migration", input = Json)]
pub async fn pause_migration(name: String, pause: bool) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    let overview = if pause { engine.pause(&name, &user.email).await? } else { engine.continue_run(&name, &user.email).await? };
    Ok(overview.into())
}

/// Changes adjustable parameters of a running migration (name to value, as typed); it takes them at its next
/// unit of work.
#[server(endpoint = "adjust_migration", input = Json)]
pub async fn adjust_migration(name: String, parameters: serde_json::Map<String, serde_json::Value>) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    Ok(engine.adjust(&name, &user.email, &parameters).await?.into())
}

/// Drops the backup a completed migration kept; it can no longer be rolled back.
#[server(endpoint = "finalize_migration", input = Json)]
pub async fn finalize_migration(name: String) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    Ok(engine.finalize(&name, &user.email).await?.into())
}

/// Lets a run that holds its cut-over swap its tables now.
#[server(endpoint = "cut_over_migration", input = Json)]
pub async fn cut_over_migration(name: String) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    Ok(engine.cut_over(&name, &user.email).await?.into())
}

/// An escape hatch, with the reason staff give: marks errored a migration whose runner went silent
/// (`completed` false), or marks completed an errored one whose work was finished by hand.
#[server(endpoint = "mark_migration", input = Json)]
pub async fn mark_migration(name: String, completed: bool, reason: String) -> Result<MigrationRow, AppError> {
    let (engine, user) = require_staff().await?;
    let marked = if completed {
        engine.mark_completed(&name, &user.email, &reason).await?
    } else {
        engine.mark_errored(&name, &user.email, &reason).await?
    };
    Ok(marked.into())
}

/// Reads a migration's error log, oldest first.
#[server(endpoint = "get_migration_errors", input = Json)]
pub async fn get_migration_errors(name: String) -> Result<Vec<ErrorEntry>, AppError> {
    let (engine, _) = require_staff().await?;
    let errors = engine.errors(&name).await?;
    Ok(errors.into_iter().map(|error| ErrorEntry::from_engine(error, engine.definition(&name))).collect())
}

/// What a run of the migration with these parameter values would send and touch now; changes nothing.
#[server(endpoint = "plan_migration", input = Json)]
pub async fn plan_migration(name: String, parameters: serde_json::Map<String, serde_json::Value>) -> Result<PlanView, AppError> {
    let (engine, _) = require_staff().await?;
    let parameters = engine.parameters_from_json(&name, &parameters)?;
    Ok(engine.plan(&name, parameters).await?.into())
}

/// The migration's detail view: its plan, the partitions its operations work through, its attempts.
#[server(endpoint = "get_migration_details", input = Json)]
pub async fn get_migration_details(name: String) -> Result<MigrationDetails, AppError> {
    let (engine, _) = require_staff().await?;
    let detail = engine.detail(&name).await?;
    Ok(MigrationDetails::from_engine(detail, engine.definition(&name)))
}

/// Reads every runtime setting with its current value.
#[server(endpoint = "get_settings", input = Json)]
pub async fn get_settings() -> Result<Vec<SettingRow>, AppError> {
    let (engine, _) = require_staff().await?;
    Ok(SettingRow::all(&engine.settings().await?))
}

/// Saves one runtime setting; it takes effect at once.
#[server(endpoint = "update_setting", input = Json)]
pub async fn update_setting(key: String, value: serde_json::Value) -> Result<Vec<SettingRow>, AppError> {
    let (engine, user) = require_staff().await?;
    Ok(SettingRow::all(&engine.update_setting(&key, &value, &user.email).await?))
}

/// Reads the newest 20 notifications with how their delivery went.
#[server(endpoint = "get_notifications", input = Json)]
pub async fn get_notifications() -> Result<Vec<NotificationRow>, AppError> {
    let (engine, _) = require_staff().await?;
    Ok(engine.notifications(20).await?.into_iter().map(NotificationRow::from).collect())
}

/// Queues a test notification to the webhook set in the settings.
#[server(endpoint = "send_test_notification", input = Json)]
pub async fn send_test_notification() -> Result<NotificationRow, AppError> {
    let (engine, user) = require_staff().await?;
    Ok(engine.send_test_notification(&user.email).await?.into())
}

/// Reads the newest 200 audit entries: who did what, when.
#[server(endpoint = "get_audit_log", input = Json)]
pub async fn get_audit_log() -> Result<Vec<AuditRow>, AppError> {
    let (engine, _) = require_staff().await?;
    Ok(engine.audit_log(200).await?.into_iter().map(AuditRow::from).collect())
}

/// Lists the migrations that must complete before this instance's version may run.
#[server(endpoint = "get_upgrade_status", input = Json)]
pub async fn get_upgrade_status() -> Result<UpgradeStatus, AppError> {
    let (engine, _) = require_staff().await?;
    let rows: Vec<MigrationRow> = engine.list().await?.into_iter().map(MigrationRow::from).collect();
    Ok(UpgradeStatus::from_check(engine.check_upgrade(None).await?, &rows))
}

/// Logs in with an email and password, sets the session cookie and goes to the staff page.
#[server(endpoint = "login")]
pub async fn login(email: String, password: String) -> Result<(), AppError> {
    let engine = engine()?;
    let accounts = engine::accounts::Accounts::of(&engine);
    let user = accounts.verify_login(&email, &password, &client_address().await).await?;
    let session = accounts.create_session(&user).await?;
    let max_age = engine::accounts::SESSION_LIFETIME.num_seconds();
    set_cookie(&crate::session::session_cookie(&session.token, max_age, crate::session::is_https(&headers().await?)));
    leptos_axum::redirect(STAFF_PAGE);
    Ok(())
}

/// Ends the session, clears the cookie and goes to the login page.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let engine = engine()?;
    let headers = headers().await?;
    if let Some(token) = crate::session::session_token(&headers) {
        engine::accounts::Accounts::of(&engine).delete_session(&token).await?;
    }
    set_cookie(&crate::session::session_cookie("", 0, crate::session::is_https(&headers)));
    leptos_axum::redirect(crate::LOGIN_PAGE);
    Ok(())
}

/// Says who is logged in, if anyone (the one server function open to every visitor).
#[server(endpoint = "current_user", input = Json)]
pub async fn current_user() -> Result<Option<LoggedInUser>, AppError> {
    let engine = engine()?;
    let user = crate::session::request_user(&engine, &headers().await?).await?;
    Ok(user.as_ref().map(LoggedInUser::from))
}
