-- ecomind:destructive
-- ecomind:irreversible
ALTER TABLE users DROP COLUMN role;
