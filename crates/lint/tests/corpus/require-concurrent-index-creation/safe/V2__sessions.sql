-- ecomind:irreversible
-- A table created earlier in the same file is new and empty: no CONCURRENTLY needed.
CREATE TABLE sessions (id text PRIMARY KEY, user_id text NOT NULL);
CREATE INDEX idx_sessions_user_id ON sessions (user_id);
