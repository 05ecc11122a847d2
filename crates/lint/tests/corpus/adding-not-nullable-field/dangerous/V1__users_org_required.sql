-- ecomind:irreversible
ALTER TABLE users ALTER COLUMN org_id SET NOT NULL;
