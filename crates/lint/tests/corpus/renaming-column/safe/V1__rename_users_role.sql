-- ecomind:irreversible
-- ecomind-lint: allow renaming-column no release has read or written role since 2026-10
ALTER TABLE users RENAME COLUMN role TO access_role;
