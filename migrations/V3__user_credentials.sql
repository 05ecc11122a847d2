-- V3__user_credentials: what password authentication needs on users.
--
-- password_hash stays nullable until every existing user has set a password.
-- failed_login_count and locked_until support locking an account after 5
-- failed logins (the policy lives in the application). Adding a nullable
-- column, or one with a constant default, does not rewrite the table.

ALTER TABLE users
    ADD COLUMN password_hash TEXT,
    ADD COLUMN failed_login_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN locked_until TIMESTAMPTZ;
