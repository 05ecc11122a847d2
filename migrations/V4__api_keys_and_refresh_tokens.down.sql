-- V4__api_keys_and_refresh_tokens (down): drops the two tables V4 created,
-- in reverse order, with their indexes and constraints. All API keys and
-- refresh tokens are lost: every client must authenticate again.

DROP TABLE refresh_tokens;
DROP TABLE api_keys;
