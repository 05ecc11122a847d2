-- ecomind:irreversible
-- Expand: a new column, backfilled and written by the application, replaces role later.
ALTER TABLE users ADD COLUMN role_name text;
