-- ecomind:irreversible
ALTER TABLE users DROP COLUMN role;
