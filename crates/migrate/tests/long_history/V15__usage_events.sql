CREATE TABLE usage_events (
    org_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    kwh double precision NOT NULL,
    PRIMARY KEY (org_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE usage_events_2026_11 PARTITION OF usage_events
    FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00');
CREATE TABLE usage_events_2026_12 PARTITION OF usage_events
    FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
