-- ecomind:irreversible
CREATE INDEX idx_users_role ON users (role);
