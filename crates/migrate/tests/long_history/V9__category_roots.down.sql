DROP VIEW category_roots;
