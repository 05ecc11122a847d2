ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_not_empty CHECK (action <> '');
