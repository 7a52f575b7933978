DROP TABLE audit_log;
DROP TABLE sanctions;
ALTER TABLE accounts DROP COLUMN role;
