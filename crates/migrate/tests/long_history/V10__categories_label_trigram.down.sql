-- ecomind:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS categories_label_trgm;
