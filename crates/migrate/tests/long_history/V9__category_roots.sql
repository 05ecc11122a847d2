CREATE VIEW category_roots AS
    SELECT id, org_id, path, subpath(path, 0, 1) AS root, nlevel(path) AS depth
    FROM categories
    WHERE nlevel(path) = 1;
