CREATE TYPE user_role AS ENUM ('viewer', 'admin');
ALTER TABLE users ADD COLUMN role user_role NOT NULL DEFAULT 'viewer';
