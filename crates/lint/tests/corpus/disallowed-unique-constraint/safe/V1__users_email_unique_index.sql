-- ecomind:no-transaction
-- ecomind:irreversible
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_unique ON users (email);
