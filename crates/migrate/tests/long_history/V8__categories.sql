CREATE TABLE categories (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    path ltree NOT NULL,
    label text NOT NULL
);
CREATE INDEX categories_path ON categories USING gist (path);
