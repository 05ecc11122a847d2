-- ecomind:irreversible
ALTER TABLE events_enriched ADD CONSTRAINT events_enriched_org_id_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (org_id) NOT VALID;
