-- ecomind:irreversible
ALTER TABLE legacy_events ADD CONSTRAINT legacy_events_pkey PRIMARY KEY USING INDEX legacy_events_pkey;
