-- ecomind:irreversible
-- ecomind-lint: allow renaming-column the application reads access_role since release 43
ALTER TABLE users RENAME COLUMN role TO access_role;
