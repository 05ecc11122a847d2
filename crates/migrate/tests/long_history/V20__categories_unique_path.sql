ALTER TABLE categories ADD CONSTRAINT categories_org_path UNIQUE (org_id, path);
