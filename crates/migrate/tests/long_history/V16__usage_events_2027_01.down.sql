DROP TABLE usage_events_2027_01;
