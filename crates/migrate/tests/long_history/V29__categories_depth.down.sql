ALTER TABLE categories DROP COLUMN depth;
