-- ecomind:irreversible
ALTER TABLE events_enriched ADD CONSTRAINT events_enriched_kwh_check CHECK (kwh >= 0);
