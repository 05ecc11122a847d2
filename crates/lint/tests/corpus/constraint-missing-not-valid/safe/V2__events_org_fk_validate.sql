-- ecomind:irreversible
ALTER TABLE events_enriched VALIDATE CONSTRAINT events_enriched_org_id_fkey;
