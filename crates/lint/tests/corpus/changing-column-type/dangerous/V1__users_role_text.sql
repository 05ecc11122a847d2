-- ecomind:irreversible
ALTER TABLE users ALTER COLUMN role TYPE text;
