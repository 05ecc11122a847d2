DROP VIEW organization_owners;
