-- ecomind:irreversible
CREATE TABLE webhooks (id text PRIMARY KEY);
