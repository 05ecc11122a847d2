-- ecomind:irreversible
ALTER TABLE users VALIDATE CONSTRAINT users_org_id_not_null;
ALTER TABLE users ALTER COLUMN org_id SET NOT NULL;
