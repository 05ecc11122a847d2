DROP INDEX usage_events_ts;
