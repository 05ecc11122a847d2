ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_not_empty;
