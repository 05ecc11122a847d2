-- ecomind:irreversible
CREATE TABEL sessions (id text PRIMARY KEY);
