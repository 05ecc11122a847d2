DROP FUNCTION search_categories(text);
