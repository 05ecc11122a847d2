COMMENT ON COLUMN users.email_domain IS NULL;
COMMENT ON TABLE usage_events IS NULL;
