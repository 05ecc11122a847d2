-- ecomind:irreversible
ALTER TABLE users ADD COLUMN token text DEFAULT gen_random_uuid()::text;
