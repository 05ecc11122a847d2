-- ecomind:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS categories_label_trgm
    ON categories USING gin (label gin_trgm_ops);
