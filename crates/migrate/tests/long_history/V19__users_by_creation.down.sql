-- ecomind:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS users_email_domain;
DROP INDEX CONCURRENTLY IF EXISTS users_created_at;
