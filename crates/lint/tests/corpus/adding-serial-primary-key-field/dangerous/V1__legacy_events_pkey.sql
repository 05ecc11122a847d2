-- ecomind:irreversible
ALTER TABLE legacy_events ADD PRIMARY KEY (id);
