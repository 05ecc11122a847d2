-- ecomind:irreversible
-- Expand: the new name as a view; code moves over, the old name goes in a later release.
CREATE VIEW accounts AS SELECT * FROM users;
