DROP FUNCTION hash_token(text);
