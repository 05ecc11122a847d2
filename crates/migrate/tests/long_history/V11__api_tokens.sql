CREATE TABLE api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    salt text NOT NULL DEFAULT extensions.gen_salt('bf'),
    created_at timestamptz NOT NULL DEFAULT now()
);
