DROP TRIGGER organizations_touch ON organizations;
DROP FUNCTION touch_updated_at();
ALTER TABLE organizations DROP COLUMN updated_at;
