-- ecomind:irreversible
-- ecomind-lint: allow renaming-column
ALTER TABLE users RENAME COLUMN role TO access_role;
