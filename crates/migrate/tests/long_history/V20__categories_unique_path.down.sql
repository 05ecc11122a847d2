ALTER TABLE categories DROP CONSTRAINT categories_org_path;
