CREATE FUNCTION hash_token(token text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    -- sha256 of the token; the salt is for passwords, not tokens
    RETURN extensions.digest(token, 'sha256');
END
$$;
