-- ecomind:no-transaction
-- ecomind:irreversible
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS legacy_events_pkey ON legacy_events (id);
