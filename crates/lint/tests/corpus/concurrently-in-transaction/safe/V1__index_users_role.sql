-- ecomind:no-transaction
-- ecomind:irreversible
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_role ON users (role);
