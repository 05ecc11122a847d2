-- ecomind:irreversible
ALTER TABLE users RENAME COLUMN role TO access_role;
