-- ecomind:no-transaction
--
-- V2__performance_indexes (down): drops the three composite indexes of V2,
-- in reverse order.
--
-- DROP INDEX CONCURRENTLY does not block reads and writes on the table while
-- it waits, and like its CREATE it cannot run inside a transaction block.
-- IF EXISTS makes it safe to rerun after a failure part way.

DROP INDEX CONCURRENTLY IF EXISTS idx_audit_logs_org_id_timestamp;
DROP INDEX CONCURRENTLY IF EXISTS idx_daily_user_agg_org_id_date;
DROP INDEX CONCURRENTLY IF EXISTS idx_events_org_id_ts;
