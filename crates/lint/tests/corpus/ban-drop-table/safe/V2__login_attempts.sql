CREATE TABLE login_attempts (id text PRIMARY KEY, at timestamptz NOT NULL);
