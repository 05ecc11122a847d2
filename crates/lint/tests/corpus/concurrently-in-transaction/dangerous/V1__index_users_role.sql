-- ecomind:irreversible
CREATE INDEX CONCURRENTLY idx_users_role ON users (role);
