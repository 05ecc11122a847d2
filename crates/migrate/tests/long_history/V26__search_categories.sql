CREATE FUNCTION search_categories(q text) RETURNS SETOF categories
LANGUAGE sql STABLE AS $$
    SELECT * FROM categories WHERE label % q ORDER BY similarity(label, q) DESC
$$;
