-- ecomind:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS organizations_name_trgm;
DROP INDEX CONCURRENTLY IF EXISTS categories_path_label;
