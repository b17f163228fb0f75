-- Staff accounts for the web page: users with argon2 password hashes, their sessions, and login attempts
-- for rate limiting.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text        NOT NULL UNIQUE CHECK (email = lower(email)),
    -- A PHC string: `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    password_hash text        NOT NULL,
    is_staff      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The browser holds a random token; only its SHA-256 is stored, so a leaked table opens no session.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Every login attempt, kept a day: failures within the rate-limit window refuse further attempts.
CREATE TABLE login_attempts (
    id           bigserial PRIMARY KEY,
    email        text        NOT NULL,
    ip           text        NOT NULL,
    succeeded    boolean     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_by_email ON login_attempts (email, attempted_at);
CREATE INDEX login_attempts_by_ip ON login_attempts (ip, attempted_at);
