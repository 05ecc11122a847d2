ALTER TABLE categories ADD COLUMN depth integer GENERATED ALWAYS AS (nlevel(path)) STORED;
