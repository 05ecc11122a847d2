-- ecomind:irreversible
DROP INDEX idx_users_email;
