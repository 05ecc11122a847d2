-- ecomind:no-transaction
-- ecomind:irreversible
DROP INDEX CONCURRENTLY IF EXISTS idx_users_email;
