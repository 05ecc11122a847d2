CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    org_id bigint REFERENCES organizations (id) ON DELETE SET NULL,
    action text NOT NULL,
    detail jsonb,
    at timestamptz NOT NULL DEFAULT now()
);
