CREATE TABLE organization_settings (
    org_id bigint PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    settings jsonb NOT NULL DEFAULT '{}',
    signing_key bytea NOT NULL DEFAULT extensions.gen_random_bytes(32)
);
