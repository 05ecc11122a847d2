-- PostgreSQL cannot drop an enum value: rebuild the type without it.
ALTER TABLE users ALTER COLUMN status DROP DEFAULT;
ALTER TYPE user_status RENAME TO user_status_old;
CREATE TYPE user_status AS ENUM ('active', 'disabled');
ALTER TABLE users ALTER COLUMN status TYPE user_status USING status::text::user_status;
ALTER TABLE users ALTER COLUMN status SET DEFAULT 'active';
DROP TYPE user_status_old;
