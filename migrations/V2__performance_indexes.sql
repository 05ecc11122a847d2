-- ecomind:no-transaction
--
-- V2__performance_indexes: composite indexes for the API's per-organisation
-- time-range queries (events, daily per-user totals, audit log).
--
-- CREATE INDEX CONCURRENTLY lets production keep writing while each index
-- builds, but it cannot run inside a transaction block, hence the directive
-- above: the engine sends these statements one at a time, outside a
-- transaction, without lock_timeout (a concurrent build waits for older
-- transactions by design; statement_timeout still bounds it).
--
-- IF NOT EXISTS makes the file safe to rerun after a failure part way: the
-- indexes built before the failure are kept, the rest are built. It cannot
-- hide a broken build, because the engine refuses to start a non-transactional
-- migration while an INVALID index left by an interrupted build exists
-- (`status` shows it, `repair` drops it).

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_org_id_ts ON events_enriched (org_id, ts);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_daily_user_agg_org_id_date ON daily_user_agg (org_id, date);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_org_id_timestamp ON audit_logs (org_id, "timestamp");
