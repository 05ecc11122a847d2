-- Data only: mark where the audited history starts.
INSERT INTO audit_log (action, detail) VALUES ('history-start', '{"source": "migration"}');
