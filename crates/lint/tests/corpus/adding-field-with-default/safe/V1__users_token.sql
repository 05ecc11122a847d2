-- ecomind:irreversible
-- No default: no rewrite. Backfill in batches, then give new rows a default.
ALTER TABLE users ADD COLUMN token text;
ALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid()::text;
