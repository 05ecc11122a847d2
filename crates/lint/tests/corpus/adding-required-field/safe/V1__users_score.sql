-- ecomind:irreversible
ALTER TABLE users ADD COLUMN score integer NOT NULL DEFAULT 0;
