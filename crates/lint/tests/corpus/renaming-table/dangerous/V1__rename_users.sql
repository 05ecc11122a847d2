-- ecomind:irreversible
ALTER TABLE users RENAME TO accounts;
