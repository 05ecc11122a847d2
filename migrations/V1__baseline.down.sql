-- V1__baseline (down): drops everything V1 created, leaving an empty database.
--
-- Tables go in the reverse order of their creation, so users goes before the
-- organizations it references. Their indexes, constraints and owned sequences
-- (audit_logs_id_seq) go with them. Only useful on development and test
-- databases: on production this deletes all data.

DROP TABLE audit_logs;
DROP TABLE daily_model_agg;
DROP TABLE daily_provider_agg;
DROP TABLE daily_user_agg;
DROP TABLE daily_org_agg;
DROP TABLE events_enriched;
DROP TABLE users;
DROP TABLE organizations;
