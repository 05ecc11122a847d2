COMMENT ON TABLE usage_events IS 'energy use per organisation, one partition a month';
COMMENT ON COLUMN users.email_domain IS 'derived from email';
