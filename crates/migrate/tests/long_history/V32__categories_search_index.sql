-- ecomind:no-transaction
-- Two statements: the second uses what the first built.
CREATE INDEX CONCURRENTLY IF NOT EXISTS categories_path_label ON categories (path, label);
CREATE INDEX CONCURRENTLY IF NOT EXISTS organizations_name_trgm ON organizations USING gist (name gist_trgm_ops);
