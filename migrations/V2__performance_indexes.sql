-- ecomind:no-transaction
--
-- V2__performance_indexes: composite indexes for the API's per-organisation
-- time-range queries (events, daily per-user totals, audit log).
--
-- CREATE INDEX CONCURRENTLY lets production keep writing while each index
-- builds, but it cannot run inside a transaction block, hence the directive
-- above: the engine sends these statements one at a time, outside a
-- transaction. There is deliberately no IF NOT EXISTS: a failed concurrent
-- build leaves an INVALID index behind, and a rerun must then fail loudly on
-- the name instead of silently keeping the broken index.

CREATE INDEX CONCURRENTLY idx_events_org_id_ts ON events_enriched (org_id, ts);
CREATE INDEX CONCURRENTLY idx_daily_user_agg_org_id_date ON daily_user_agg (org_id, date);
CREATE INDEX CONCURRENTLY idx_audit_logs_org_id_timestamp ON audit_logs (org_id, "timestamp");
