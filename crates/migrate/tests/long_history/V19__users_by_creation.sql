-- ecomind:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at ON users (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_domain ON users (email_domain);
