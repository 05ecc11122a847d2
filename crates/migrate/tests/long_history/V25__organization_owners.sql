CREATE VIEW organization_owners AS
    SELECT u.id, u.org_id, u.email, o.slug
    FROM users u JOIN organizations o ON o.id = u.org_id
    WHERE u.role = 'owner';
