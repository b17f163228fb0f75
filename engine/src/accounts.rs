//! Staff accounts: users with argon2 password hashes, sessions stored as SHA-256 hashes of random tokens,
//! and logins rate-limited per email and per client address.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use crate::{Engine, Error, Result};

/// How long a session lasts after login.
pub const SESSION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Failed logins count against a limit for this long.
pub const LOGIN_WINDOW_MINUTES: i64 = 15;
/// Failed logins for one email within the window before further attempts are refused.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failed logins from one client address within the window (higher: many people may share a proxy).
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// The shortest password an account may have.
pub const MIN_PASSWORD_LENGTH: usize = 10;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub is_staff: bool,
    pub created_at: DateTime<Utc>,
}

impl User {
    fn from_row(row: &PgRow) -> Result<User> {
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            is_staff: row.try_get("is_staff")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A session just opened: the token for the browser's cookie (never stored) and when it expires.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// The accounts, sessions and login attempts in Postgres.
#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
}

impl Accounts {
    pub fn new(pool: PgPool) -> Accounts {
        Accounts { pool }
    }

    /// The accounts of the engine's database.
    pub fn of(engine: &Engine) -> Accounts {
        Accounts::new(engine.store().pool().clone())
    }

    /// Creates an account. The first account on an instance is staff whatever `staff` says, so that someone
    /// can always reach the staff page.
    pub async fn create_user(&self, email: &str, password: &str, staff: bool) -> Result<User> {
        let email = normalize_email(email)?;
        if password.chars().count() < MIN_PASSWORD_LENGTH {
            return Err(Error::InvalidRequest(format!("the password must have at least {MIN_PASSWORD_LENGTH} characters")));
        }
        let password_hash = hash_password(password.to_string()).await?;
        let mut transaction = self.pool.begin().await?;
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(&mut *transaction).await?;
        let row = sqlx::query(
            "INSERT INTO users (email, password_hash, is_staff)
             VALUES ($1, $2, $3 OR NOT EXISTS (SELECT 1 FROM users))
             ON CONFLICT (email) DO NOTHING
             RETURNING id, email, is_staff, created_at",
        )
        .bind(&email)
        .bind(&password_hash)
        .bind(staff)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            return Err(Error::InvalidRequest(format!("an account with email {email} already exists")));
        };
        transaction.commit().await?;
        User::from_row(&row)
    }

    /// Checks an email and password from `ip`. Refused without checking the password when that email or
    /// address failed too often lately; every checked attempt is recorded.
    pub async fn verify_login(&self, email: &str, password: &str, ip: &str) -> Result<User> {
        let email = email.trim().to_lowercase();
        sqlx::query("DELETE FROM login_attempts WHERE attempted_at < now() - interval '1 day'").execute(&self.pool).await?;
        if let Some(minutes) = self.lockout_minutes(&email, ip).await? {
            return Err(Error::TooManyLoginAttempts { minutes });
        }
        let row = sqlx::query("SELECT id, email, is_staff, created_at, password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.pool)
            .await?;
        // An unknown email costs the same hashing time as a known one, so timing does not tell them apart.
        let stored_hash = match &row {
            Some(row) => row.try_get::<String, _>("password_hash")?,
            None => unknown_user_hash().to_string(),
        };
        let matches = verify_password(password.to_string(), stored_hash).await? && row.is_some();
        sqlx::query("INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, $2, $3)")
            .bind(&email)
            .bind(ip)
            .bind(matches)
            .execute(&self.pool)
            .await?;
        match row {
            Some(row) if matches => User::from_row(&row),
            _ => Err(Error::LoginRefused),
        }
    }

    /// Minutes until the oldest counted failure leaves the window, when `email` or `ip` reached its limit.
    async fn lockout_minutes(&self, email: &str, ip: &str) -> Result<Option<i64>> {
        let window = format!("{LOGIN_WINDOW_MINUTES} minutes");
        let by_email = sqlx::query(
            "SELECT count(*) AS failures, min(attempted_at) AS oldest FROM login_attempts
             WHERE email = $1 AND NOT succeeded AND attempted_at > now() - $2::interval
                 AND attempted_at > COALESCE((SELECT max(attempted_at) FROM login_attempts WHERE email = $1 AND succeeded), '-infinity')",
        )
        .bind(email)
        .bind(&window)
        .fetch_one(&self.pool)
        .await?;
        let by_ip = sqlx::query(
            "SELECT count(*) AS failures, min(attempted_at) AS oldest FROM login_attempts
             WHERE ip = $1 AND NOT succeeded AND attempted_at > now() - $2::interval",
        )
        .bind(ip)
        .bind(&window)
        .fetch_one(&self.pool)
        .await?;
        let mut lockout_ends: Option<DateTime<Utc>> = None;
        for (row, limit) in [(by_email, MAX_FAILURES_PER_EMAIL), (by_ip, MAX_FAILURES_PER_IP)] {
            let failures: i64 = row.try_get("failures")?;
            let oldest: Option<DateTime<Utc>> = row.try_get("oldest")?;
            if let (true, Some(oldest)) = (failures >= limit, oldest) {
                let ends = oldest + chrono::TimeDelta::minutes(LOGIN_WINDOW_MINUTES);
                lockout_ends = Some(lockout_ends.map_or(ends, |other| other.max(ends)));
            }
        }
        Ok(lockout_ends.map(|ends| {
            let seconds = (ends - Utc::now()).num_seconds().max(1);
            (seconds + 59) / 60
        }))
    }

    /// Opens a session for `user`; the returned token goes into the browser's cookie.
    pub async fn create_session(&self, user: &User) -> Result<NewSession> {
        sqlx::query("DELETE FROM sessions WHERE expires_at < now()").execute(&self.pool).await?;
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = hex(&bytes);
        let expires_at = Utc::now() + SESSION_LIFETIME;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(token_hash(&token))
            .bind(user.id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(NewSession { token, expires_at })
    }

    /// The user an unexpired session token belongs to.
    pub async fn session_user(&self, token: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT users.id, users.email, users.is_staff, users.created_at FROM sessions
             JOIN users ON users.id = sessions.user_id
             WHERE sessions.token_hash = $1 AND sessions.expires_at > now()",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// Ends a session (logout); ending an unknown one is not an error.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(token)).execute(&self.pool).await?;
        Ok(())
    }
}

/// Trims and lowercases an email, and refuses what cannot be one.
fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|character| character.is_whitespace() || character.is_control());
    if valid {
        Ok(email)
    } else {
        Err(Error::InvalidRequest(format!("{email:?} is not an email address")))
    }
}

/// Hashes a password with argon2id and a random salt, off the async threads (it takes tens of milliseconds).
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Error::PasswordHash(error.to_string()))
    })
    .await
    .map_err(|error| Error::PasswordHash(error.to_string()))?
}

async fn verify_password(password: String, stored_hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let hash = PasswordHash::new(&stored_hash).map_err(|error| Error::PasswordHash(error.to_string()))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .map_err(|error| Error::PasswordHash(error.to_string()))?
}

/// A hash no password matches in practice, verified against for unknown emails.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(&secret, &salt).expect("hashing random bytes").to_string()
    })
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn accounts() -> Accounts {
        let config = crate::testing::fresh_databases().await;
        let store = Store::connect(&config.database_url).await.unwrap();
        store.migrate().await.unwrap();
        Accounts::new(store.pool().clone())
    }

    #[tokio::test]
    async fn the_first_account_is_staff_and_later_ones_only_when_asked() {
        let accounts = accounts().await;
        let first = accounts.create_user(" Admin@Example.com ", "correct horse battery", false).await.unwrap();
        assert!(first.is_staff);
        assert_eq!(first.email, "admin@example.com");
        assert!(!accounts.create_user("viewer@example.com", "correct horse battery", false).await.unwrap().is_staff);
        assert!(accounts.create_user("second@example.com", "correct horse battery", true).await.unwrap().is_staff);
        let duplicate = accounts.create_user("ADMIN@example.com", "correct horse battery", true).await.unwrap_err();
        assert_eq!(duplicate.to_string(), "an account with email admin@example.com already exists");
        assert!(accounts.create_user("short@example.com", "short", true).await.unwrap_err().is_refusal());
        assert!(accounts.create_user("not an email", "correct horse battery", true).await.unwrap_err().is_refusal());
    }

    #[tokio::test]
    async fn sessions_store_only_a_hash_and_end_at_logout() {
        let accounts = accounts().await;
        let user = accounts.create_user("admin@example.com", "correct horse battery", false).await.unwrap();
        let logged_in = accounts.verify_login("admin@example.com", "correct horse battery", "10.0.0.1").await.unwrap();
        assert_eq!(logged_in, user);
        let session = accounts.create_session(&user).await.unwrap();
        assert_eq!(session.token.len(), 64);
        let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_one(&accounts.pool).await.unwrap();
        assert_ne!(stored, session.token.as_bytes());
        assert_eq!(accounts.session_user(&session.token).await.unwrap(), Some(user));
        assert_eq!(accounts.session_user("forged").await.unwrap(), None);
        accounts.delete_session(&session.token).await.unwrap();
        assert_eq!(accounts.session_user(&session.token).await.unwrap(), None);
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_email_and_the_address_for_a_while() {
        let accounts = accounts().await;
        accounts.create_user("admin@example.com", "correct horse battery", false).await.unwrap();
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            let refusal = accounts.verify_login("admin@example.com", "wrong", "10.0.0.1").await.unwrap_err();
            assert!(matches!(refusal, Error::LoginRefused), "{refusal}");
        }
        // Even the right password is refused now, with when to try again.
        let locked = accounts.verify_login("admin@example.com", "correct horse battery", "10.0.0.2").await.unwrap_err();
        assert_eq!(locked.to_string(), format!("too many failed logins; try again in {LOGIN_WINDOW_MINUTES} minutes"));
        assert!(locked.is_refusal());

        // One address guessing many emails is limited too.
        for attempt in 0..MAX_FAILURES_PER_IP {
            let _ = accounts.verify_login(&format!("guess{attempt}@example.com"), "wrong", "10.0.0.9").await;
        }
        accounts.create_user("other@example.com", "correct horse battery", false).await.unwrap();
        let locked = accounts.verify_login("other@example.com", "correct horse battery", "10.0.0.9").await.unwrap_err();
        assert!(matches!(locked, Error::TooManyLoginAttempts { .. }), "{locked}");
        assert!(accounts.verify_login("other@example.com", "correct horse battery", "10.0.0.3").await.is_ok());
    }
}
