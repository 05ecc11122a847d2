CREATE INDEX usage_events_ts ON usage_events (ts DESC);
