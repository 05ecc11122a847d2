-- ecomind:irreversible
DROP TABLE audit_logs;
