-- ecomind:destructive
-- ecomind:irreversible
-- Nothing has read audit_logs since release 42; the data is archived.
DROP TABLE audit_logs;
