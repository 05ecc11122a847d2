CREATE TABLE organizations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    slug extensions.citext NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
