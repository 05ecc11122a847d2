ALTER TABLE users ADD COLUMN email_domain text
    GENERATED ALWAYS AS (lower(split_part(email::text, '@', 2))) STORED;
