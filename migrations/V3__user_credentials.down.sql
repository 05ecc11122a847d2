-- V3__user_credentials (down): removes the credential columns V3 added to
-- users, in reverse order. Stored password hashes and lockouts are lost.

ALTER TABLE users
    DROP COLUMN locked_until,
    DROP COLUMN failed_login_count,
    DROP COLUMN password_hash;
