-- ecomind:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_at ON audit_log USING brin (at);
