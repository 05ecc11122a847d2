CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email extensions.citext NOT NULL UNIQUE,
    password_hash text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_org_id ON users (org_id);
